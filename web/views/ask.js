// #/ask and #/ask/<id>: ask a question, then follow its answer live. The
// answer is rebuilt from the `answer:<id>` topic, subscribed with after=0 over
// the shared live connection, so a dropped socket resumes after the last
// applied seq (no delta lost or doubled) and a reload shows the same answer.
// A resync (the log outlived) replaces the state with the answer's snapshot.

import { ask } from '../api.js';
import { EVENTS, isUuid, TERMINAL_ANSWER_STATUSES, topics } from '../protocol.js';
import { badge, h, replace, shortId } from '../dom.js';

let debugState = null;
export function debug() {
  return debugState ? debugState() : null;
}

/** An empty answer state. */
function blank(id) {
  return { id, question: '', status: 'generating', text: '', sources: [], citations: [], error: null };
}

/** Applies one answer-topic event (mutating `a`). */
export function applyAnswerEvent(a, f) {
  const d = f.data || {};
  switch (f.event) {
    case EVENTS.ANSWER_RETRIEVED:
      a.sources = Array.isArray(d.sources) ? d.sources : [];
      a.status = 'generating';
      break;
    case EVENTS.ANSWER_DELTA:
      a.text += d.text || '';
      break;
    case EVENTS.ANSWER_COMPLETED:
      a.status = 'completed';
      a.text = d.text ?? a.text;
      a.citations = Array.isArray(d.citations) ? d.citations : [];
      break;
    case EVENTS.ANSWER_FAILED:
      a.status = 'failed';
      a.error = d.error || 'failed';
      break;
    default:
      break;
  }
}

/** The answer text with each cited number (`[n]`, `[n, m]`) linked to the content it cites. */
function answerText(a) {
  const byN = new Map([...a.sources, ...a.citations].map((s) => [String(s.n), s.content_id]));
  const link = (n) => {
    const cid = byN.get(n);
    return cid && isUuid(cid) ? h('a', { href: `#/content/${cid}`, class: 'cite', title: `Source ${n}` }, n) : n;
  };
  const parts = [];
  let last = 0;
  for (const m of a.text.matchAll(/\[(\d+(?:, ?\d+)*)\]/g)) {
    parts.push(a.text.slice(last, m.index), '[');
    m[1].split(/(, ?)/).forEach((piece, i) => parts.push(i % 2 ? piece : link(piece)));
    parts.push(']');
    last = m.index + m[0].length;
  }
  parts.push(a.text.slice(last));
  return parts;
}

export function mount(root, { id }, ctx) {
  ctx.setTitle(id ? `Answer ${shortId(id)}` : 'Ask');
  const question = h('input', { type: 'text', id: 'question', name: 'question', autocomplete: 'off', maxlength: '500', placeholder: 'e.g. When do auroras peak?' });
  // An alert: a refusal from the server (401, 429) is read out, not only shown.
  const qError = h('p', { class: 'field-error', id: 'question-error', role: 'alert', hidden: true });
  question.setAttribute('aria-describedby', 'question-error');
  const button = h('button', { type: 'submit', class: 'btn primary' }, 'Ask');
  const form = h('form', { class: 'card search-form', 'aria-label': 'Ask a question' },
    h('div', { class: 'field grow' }, h('label', { for: 'question' }, 'Question'), question, qError),
    h('div', { class: 'field submit' }, button));
  // Not a live region: it is rebuilt at every delta, and would be read out
  // whole each time; the answer's end is announced (ctx.announce).
  const out = h('section', { class: 'answer-box', 'aria-labelledby': 'answer-title' });
  replace(root,
    h('section', { class: 'view', 'aria-labelledby': 'ask-title' },
      h('h1', { id: 'ask-title' }, 'Ask'),
      h('p', { class: 'hint' }, 'Answers quote the documents you may read and cite each one.'),
      form, out));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    qError.hidden = true;
    question.removeAttribute('aria-invalid');
    const text = question.value.trim();
    if (!text) {
      replace(qError, 'Type a question.');
      qError.hidden = false;
      question.setAttribute('aria-invalid', 'true');
      return;
    }
    button.disabled = true;
    try {
      const r = await ask(text);
      try {
        sessionStorage.setItem(`actorline.question.${r.answer_id}`, text);
      } catch {
        /* storage disabled: the answer exists; only its question is not kept */
      }
      // Only if the user is still here: the search inside the request can
      // take a while, and another view may be open by now.
      if (root.isConnected) location.hash = `#/ask/${r.answer_id}`;
    } catch (err) {
      replace(qError, err.describe ? err.describe() : String(err));
      qError.hidden = false;
      question.setAttribute('aria-invalid', 'true');
    } finally {
      button.disabled = false;
    }
  });

  if (!id) {
    debugState = () => null;
    return () => {};
  }
  if (!isUuid(id)) {
    replace(out, h('p', { class: 'notice error', role: 'alert' }, 'This answer id is not valid.'));
    return () => {};
  }

  let a = blank(id);
  let synced = false;
  try {
    question.value = sessionStorage.getItem(`actorline.question.${id}`) || '';
  } catch {
    /* nothing kept */
  }
  const log = [];

  function render() {
    const cites = a.citations.length
      ? h('ol', { class: 'citations results' }, a.citations.map((c) => c.removed
        // A source deleted since, or no longer readable by this reader.
        ? h('li', { class: 'result card', dataset: { n: String(c.n) } }, h('h3', null, `[${c.n}] (source removed)`))
        : h('li', { class: 'result card', dataset: { n: String(c.n), contentId: c.content_id } },
          h('h3', null, `[${c.n}] `, h('a', { href: `#/content/${c.content_id}` }, c.title)),
          h('p', { class: 'snippet' }, c.snippet))))
      : null;
    replace(out,
      h('div', { class: 'result-head' }, h('h2', { id: 'answer-title' }, 'Answer'), badge(a.status)),
      h('p', { class: 'answer-text', id: 'answer-text', dataset: { status: a.status } }, a.text ? answerText(a) : (a.status === 'failed' ? '' : '…')),
      a.error ? h('p', { class: 'notice error', role: 'alert' }, `The answer failed: ${a.error}`) : null,
      cites ? h('h2', null, 'Sources cited') : null,
      cites);
  }

  const unsubscribe = ctx.live.subscribe(topics.answer(id), {
    after: 0,
    onEvent: (f) => {
      log.push(f.seq);
      applyAnswerEvent(a, f);
      render();
      if (TERMINAL_ANSWER_STATUSES.includes(a.status)) ctx.announce(`Answer ${a.status}`);
    },
    onReady: () => {
      synced = true;
    },
    onResync: (snapshot) => {
      if (snapshot && typeof snapshot.text === 'string') {
        a = { ...blank(id), ...snapshot, sources: snapshot.citations || [], citations: snapshot.citations || [] };
      }
      synced = true;
      render();
    },
    onError: (e) => {
      replace(out, h('p', { class: 'notice error', role: 'alert' }, `This answer is not available: ${e.message}`));
    },
  });
  render();
  debugState = () => ({ id, status: a.status, text: a.text, citations: a.citations, seqs: [...log], synced });
  return () => {
    unsubscribe();
    debugState = null;
  };
}
