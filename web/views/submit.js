// #/submit: the submission form. Errors come from the API's error JSON; a 422
// names the input in `error.field`, and the message is shown next to it.

import { ApiError, get, post, upload, UPLOAD_TYPES } from '../api.js';
import { api, STAGES } from '../protocol.js';
import { badge, fmtDateTime, h, replace, time } from '../dom.js';

const FIELDS = ['title', 'body', 'category', 'tags', 'author', 'visibility'];

const SAMPLE = {
  title: 'Tidal energy in northern harbors',
  category: 'energy',
  tags: 'tidal, harbors, renewables',
  body:
    'Tidal turbines in the northern harbors of Scotland produced steady power through the winter. ' +
    'Engineers at the Orkney test site measured output against the lunar cycle and found the forecasts ' +
    'accurate to within three percent. Unlike wind, the tides are predictable years ahead, which makes ' +
    'grid planning simpler. The main costs are maintenance under water and corrosion of the copper cabling. ' +
    'Local councils plan to add two more arrays next year, and a research group in Bergen is studying ' +
    'quieter blade designs to protect marine life.',
};

function field(id, label, control, hint) {
  const hintId = hint ? `${id}-hint` : null;
  const errId = `${id}-error`;
  control.id = id;
  control.name = id;
  control.setAttribute('aria-describedby', [hintId, errId].filter(Boolean).join(' '));
  return h('div', { class: 'field', dataset: { field: id } },
    h('label', { for: id }, label),
    hint ? h('p', { class: 'hint', id: hintId }, hint) : null,
    control,
    h('p', { class: 'field-error', id: errId, hidden: true }));
}

/**
 * The upload form: a Markdown, HTML, PDF or text file becomes an item whose
 * run extracts the file's text (`POST /api/uploads`).
 */
function uploadCard(controller) {
  const accept = [...Object.keys(UPLOAD_TYPES).map((ext) => `.${ext}`), ...new Set(Object.values(UPLOAD_TYPES))].join(',');
  const file = h('input', { type: 'file', accept, required: true });
  const title = h('input', { type: 'text', autocomplete: 'off', maxlength: '300', placeholder: 'Default: the file’s first heading or name' });
  const visibility = h('select', {},
    h('option', { value: 'tenant', selected: true }, 'Tenant'),
    h('option', { value: 'private' }, 'Private'),
    h('option', { value: 'public' }, 'Public'));
  const button = h('button', { type: 'submit', class: 'btn primary' }, 'Upload file');
  const status = h('p', { class: 'form-status', role: 'status' });
  const error = h('p', { class: 'field-error', role: 'alert', hidden: true });
  const form = h('form', { class: 'card form', novalidate: true, 'aria-labelledby': 'upload-title' },
    h('h2', { id: 'upload-title' }, 'Or upload a file'),
    h('p', { class: 'hint' }, 'Markdown, HTML, PDF or plain text, up to 10 MB. The original is kept and can be downloaded.'),
    error,
    field('upload-file', 'File', file),
    h('div', { class: 'field-row' },
      field('upload-title-input', 'Title (optional)', title),
      field('upload-visibility', 'Who may read it', visibility)),
    h('div', { class: 'actions' }, button, status));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    replace(error);
    const chosen = file.files && file.files[0];
    if (!chosen) {
      replace(error, 'Choose a file first.');
      error.hidden = false;
      file.focus();
      return;
    }
    button.disabled = true;
    button.textContent = 'Uploading…';
    status.textContent = '';
    try {
      const query = { title: title.value.trim(), visibility: visibility.value };
      const accepted = await upload(chosen, query, { signal: controller.signal });
      status.textContent = 'Accepted. Opening the live run…';
      location.hash = `#/runs/${accepted.run_id}`;
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      replace(error, err instanceof ApiError ? err.describe() : String(err));
      error.hidden = false;
    } finally {
      button.disabled = false;
      button.textContent = 'Upload file';
    }
  });
  return form;
}

export function mount(root, _params, ctx) {
  ctx.setTitle('Submit');
  const controller = new AbortController();

  const title = h('input', { type: 'text', autocomplete: 'off', maxlength: '300', required: true });
  const body = h('textarea', { rows: '6', required: true });
  const category = h('input', { type: 'text', autocomplete: 'off', maxlength: '64', list: 'category-list' });
  const tags = h('input', { type: 'text', autocomplete: 'off', placeholder: 'e.g. energy, tides' });
  const author = h('input', { type: 'text', autocomplete: 'name', maxlength: '200' });
  const visibility = h('select', {},
    h('option', { value: 'tenant', selected: true }, 'Tenant: everyone in my tenant'),
    h('option', { value: 'private' }, 'Private: me and my tenant’s managers'),
    h('option', { value: 'public' }, 'Public: anyone, signed in or not'));
  const controls = { title, body, category, tags, author, visibility };
  const datalist = h('datalist', { id: 'category-list' });

  const summary = h('div', { class: 'error-summary', role: 'alert', tabindex: '-1', hidden: true });
  const button = h('button', { type: 'submit', class: 'btn primary' }, 'Submit document');
  const status = h('p', { class: 'form-status', role: 'status' });

  const form = h('form', { class: 'card form', novalidate: true, 'aria-labelledby': 'submit-title' },
    summary,
    field('title', 'Title', title, 'One line, up to 300 characters.'),
    field('body', 'Body', body, 'Plain text, up to 200 KB.'),
    h('div', { class: 'field-row' },
      field('category', 'Category (optional)', category, 'Letters, digits, spaces, “-” or “_”.'),
      field('author', 'Author (optional)', author, 'Your name, if you want it shown.')),
    field('tags', 'Tags (optional, comma separated)', tags),
    field('visibility', 'Who may read it', visibility),
    datalist,
    h('div', { class: 'actions' },
      button,
      h('button', { type: 'button', class: 'btn', onclick: fillSample }, 'Fill with sample text'),
      status));

  const uploadForm = uploadCard(controller);

  const recent = h('ol', { class: 'recent-list', 'aria-live': 'off' });
  const recentBox = h('section', { class: 'card', 'aria-labelledby': 'recent-title' },
    h('h2', { id: 'recent-title' }, 'Recent documents'),
    recent);

  replace(root,
    h('section', { class: 'view', 'aria-labelledby': 'submit-title' },
      h('h1', { id: 'submit-title' }, 'Submit a document'),
      h('p', { class: 'lede' }, 'Each document becomes a content actor and starts a pipeline run: ',
        `${STAGES.join(' → ')}. You will watch it live.`),
      h('div', { class: 'split' }, h('div', { class: 'stack' }, form, uploadForm), recentBox)));

  // Editing a field clears its error; the summary goes when no error is left.
  form.addEventListener('input', (e) => {
    const name = e.target && e.target.name;
    if (!name || !controls[name] || controls[name].getAttribute('aria-invalid') !== 'true') return;
    controls[name].removeAttribute('aria-invalid');
    const p = root.querySelector(`#${name}-error`);
    p.hidden = true;
    replace(p);
    if (!FIELDS.some((k) => controls[k].getAttribute('aria-invalid') === 'true')) {
      summary.hidden = true;
      replace(summary);
    }
  });

  function fillSample() {
    for (const [k, v] of Object.entries(SAMPLE)) controls[k].value = v;
    clearErrors();
    title.focus();
  }

  function clearErrors() {
    summary.hidden = true;
    replace(summary);
    for (const k of FIELDS) {
      const c = controls[k];
      c.removeAttribute('aria-invalid');
      const p = root.querySelector(`#${k}-error`);
      p.hidden = true;
      replace(p);
    }
  }

  function showError(err) {
    const name = err instanceof ApiError ? err.field : null;
    const target = name && controls[name] ? name : err instanceof ApiError && err.status === 413 ? 'body' : null;
    if (target) {
      const p = root.querySelector(`#${target}-error`);
      // The API says "title: must be …"; the label already names the field.
      const msg = String(err.message).replace(new RegExp(`^${target}:\\s*`), '');
      replace(p, h('span', { class: 'visually-hidden' }, 'Error: '), msg);
      p.hidden = false;
      controls[target].setAttribute('aria-invalid', 'true');
      replace(summary,
        h('h2', null, 'The document was not accepted'),
        h('ul', null, h('li', null, h('a', { href: `#${target}`, onclick: (e) => { e.preventDefault(); controls[target].focus(); } },
          `${target[0].toUpperCase()}${target.slice(1)}: ${msg}`))));
      summary.hidden = false;
      controls[target].focus();
    } else {
      const text = err instanceof ApiError ? err.describe() : String(err);
      const extra = err instanceof ApiError && err.retryAfter ? ` Try again in ${err.retryAfter} s.` : '';
      replace(summary, h('h2', null, 'The document was not accepted'), h('p', null, text + extra));
      summary.hidden = false;
      summary.focus();
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors();
    const tagList = tags.value.split(',').map((t) => t.trim()).filter(Boolean);
    const payload = { title: title.value, body: body.value };
    if (category.value.trim()) payload.category = category.value;
    if (tagList.length) payload.tags = tagList;
    if (author.value.trim()) payload.author = author.value;
    payload.visibility = visibility.value;
    button.disabled = true;
    button.textContent = 'Submitting…';
    status.textContent = '';
    try {
      const accepted = await post(api.content(), payload, { signal: controller.signal });
      status.textContent = 'Accepted. Opening the live run…';
      location.hash = `#/runs/${accepted.run_id}`;
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      showError(err);
    } finally {
      button.disabled = false;
      button.textContent = 'Submit document';
    }
  });

  (async () => {
    try {
      const list = await get(api.content(), { query: { limit: 8 }, signal: controller.signal });
      const items = list.items || [];
      const cats = [...new Set(items.map((i) => i.category).filter(Boolean))];
      replace(datalist, cats.map((c) => h('option', { value: c })));
      if (items.length === 0) {
        replace(recent, h('li', { class: 'muted' }, 'Nothing yet. Submit the first document.'));
        return;
      }
      replace(recent, items.map((i) =>
        h('li', null,
          h('a', { href: `#/content/${i.id}` }, i.title),
          h('span', { class: 'recent-meta' },
            badge(i.status), i.category ? h('span', { class: 'chip' }, i.category) : null,
            h('a', { href: `#/runs/${i.run_id}`, 'aria-label': `Run of “${i.title}”` }, 'run'),
            time(i.created_at, fmtDateTime)))));
    } catch (err) {
      if (err && err.name === 'AbortError') return;
      replace(recent, h('li', { class: 'muted' }, `Could not load recent documents (${err.describe ? err.describe() : err}).`));
    }
  })();

  return () => controller.abort();
}
