// Data acquisition page: uploads with a progress bar per file and overall, the filtered sample
// table with bulk actions, the per-label summary, and zip import.
(function () {
  const cfg = window.DATA_PAGE;
  const api = '/api/v1/projects/' + cfg.project + '/samples';
  const PAGE = 50;
  const state = { offset: 0, count: 0, selected: new Set(), rows: [] };
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') node.className = v; else if (k === 'text') node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function duration(ms) {
    if (!ms) return '';
    if (ms < 1000) return Math.round(ms) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
    return Math.floor(ms / 60000) + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
  }

  // --- Summary ---------------------------------------------------------------------------------
  function showSummary(s) {
    $('total-count').textContent = s.total;
    $('total-duration').textContent = duration(s.total_duration_ms) || '0 ms';
    $('train-ratio').textContent = s.train_ratio === null ? 'no training or testing data yet'
      : Math.round(s.train_ratio * 100) + ' % / ' + (100 - Math.round(s.train_ratio * 100)) + ' %';
    $('ratio-warning').textContent = s.ratio_warning || '';
    const body = document.querySelector('#label-table tbody');
    body.replaceChildren(...s.labels.map((e) => el('tr', { 'data-label': e.label },
      el('td', { text: e.label || '(unlabelled)' }), el('td', { text: e.training }), el('td', { text: e.testing }),
      el('td', { text: e.anomaly }), el('td', { text: duration(e.duration_ms) }))));
    fillSelect($('f-label'), s.labels.map((e) => [e.label, e.label || '(unlabelled)']), '__all__', 'All');
    fillSelect($('f-device'), s.devices.map((d) => [d, d]), '', 'All');
  }

  function fillSelect(select, options, allValue, allText) {
    const current = select.value;
    select.replaceChildren(el('option', { value: allValue, text: allText }),
      ...options.map(([v, t]) => el('option', { value: v, text: t })));
    if ([...select.options].some((o) => o.value === current)) select.value = current;
  }

  async function refreshSummary() { showSummary(await studio.api('GET', api + '/summary')); }

  // --- Table -------------------------------------------------------------------------------------
  function query() {
    const p = new URLSearchParams({ limit: PAGE, offset: state.offset, ordering: $('f-ordering').value });
    if ($('f-label').value !== '__all__') p.set('label', $('f-label').value);
    if ($('f-category').value) p.set('category', $('f-category').value);
    if ($('f-device').value) p.set('device', $('f-device').value);
    if ($('f-q').value.trim()) p.set('q', $('f-q').value.trim());
    return p.toString();
  }

  async function refreshTable() {
    const page = await studio.api('GET', api + '?' + query());
    state.count = page.count; state.rows = page.results;
    const body = document.querySelector('#sample-table tbody');
    body.replaceChildren(...page.results.map(row));
    if (!page.results.length) body.append(el('tr', {}, el('td', { colspan: 8, class: 'muted', text: 'No samples match.' })));
    const last = Math.min(state.offset + PAGE, state.count);
    $('page-info').textContent = state.count ? (state.offset + 1) + '–' + last + ' of ' + state.count : '';
    $('page-prev').disabled = state.offset === 0;
    $('page-next').disabled = last >= state.count;
    updateSelection();
  }

  function row(s) {
    const tr = el('tr', { 'data-sample-id': s.id, class: s.enabled ? '' : 'muted' });
    if (cfg.canEdit) {
      const box = el('input', { type: 'checkbox', 'aria-label': 'select ' + s.file_name });
      box.checked = state.selected.has(s.id);
      box.addEventListener('change', () => { box.checked ? state.selected.add(s.id) : state.selected.delete(s.id); updateSelection(); });
      tr.append(el('td', {}, box));
    }
    const link = el('a', { href: cfg.sampleUrl + '/' + s.id, text: s.file_name });
    const size = s.kind === 'image' ? s.width + '×' + s.height : duration(s.duration_ms);
    tr.append(el('td', {}, link), el('td', { class: 'label', text: s.label || '—' }), el('td', { text: s.category }),
      el('td', { text: s.kind + (s.enabled ? '' : ' (disabled)') }), el('td', { text: size }),
      el('td', { text: s.device_name || '' }), el('td', { text: new Date(s.created_at).toLocaleString() }));
    return tr;
  }

  function updateSelection() {
    if (!cfg.canEdit) return;
    $('selected-count').textContent = state.selected.size;
    const all = $('select-all');
    all.checked = state.rows.length > 0 && state.rows.every((r) => state.selected.has(r.id));
  }

  function refresh() { return Promise.all([refreshSummary(), refreshTable()]); }

  for (const id of ['f-label', 'f-category', 'f-device', 'f-ordering']) {
    $(id).addEventListener('change', () => { state.offset = 0; refreshTable(); });
  }
  let typing = null;
  $('f-q').addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(() => { state.offset = 0; refreshTable(); }, 250); });
  $('page-prev').addEventListener('click', () => { state.offset = Math.max(0, state.offset - PAGE); refreshTable(); });
  $('page-next').addEventListener('click', () => { state.offset += PAGE; refreshTable(); });

  if (cfg.canEdit) {
    $('select-all').addEventListener('change', (e) => {
      for (const r of state.rows) { e.target.checked ? state.selected.add(r.id) : state.selected.delete(r.id); }
      refreshTable();
    });
    for (const button of document.querySelectorAll('[data-bulk]')) {
      button.addEventListener('click', async () => {
        const action = button.dataset.bulk;
        const ids = [...state.selected];
        $('bulk-error').textContent = '';
        if (!ids.length) { $('bulk-error').textContent = 'Select samples first.'; return; }
        if (action === 'delete' && !confirm('Delete ' + ids.length + ' samples?')) return;
        const body = { ids: ids, action: action };
        if (action === 'relabel') body.label = $('bulk-label').value;
        if (action === 'move') body.category = $('bulk-category').value;
        try {
          await studio.api('POST', api + '/bulk', body);
          if (action === 'delete') state.selected.clear();
          await refresh();
        } catch (err) { $('bulk-error').textContent = err.message; }
      });
    }
  }

  // --- Upload ------------------------------------------------------------------------------------
  // One request per file (the raw file as the body) so each file has its own progress; three at a time.
  function uploadOne(file, category, labelMode, label, onProgress) {
    return new Promise((resolve) => {
      const p = new URLSearchParams({ category: category, file_name: file.name });
      if (labelMode === 'fixed') p.set('label', label);
      if (labelMode === 'none') p.set('no_label', '1');
      const xhr = new XMLHttpRequest();
      xhr.open('POST', api + '/upload?' + p.toString());
      xhr.setRequestHeader('X-CSRFToken', studio.csrf());
      xhr.upload.addEventListener('progress', (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
      xhr.addEventListener('load', () => {
        let data = null;
        try { data = JSON.parse(xhr.responseText); } catch (e) { data = { detail: xhr.responseText || xhr.statusText }; }
        resolve(xhr.status === 201 ? { ok: true, sample: data } : { ok: false, error: (data && data.detail) || ('HTTP ' + xhr.status) });
      });
      xhr.addEventListener('error', () => resolve({ ok: false, error: 'network error' }));
      xhr.send(file);
    });
  }

  async function startUpload() {
    const files = [...$('upload-files').files];
    if (!files.length) return;
    const category = $('upload-category').value;
    const labelMode = document.querySelector('input[name=label-mode]:checked').value;
    const label = $('upload-label').value;
    const list = document.querySelector('#upload-list tbody');
    list.replaceChildren();
    $('upload-list').hidden = false; $('upload-overall').hidden = false;
    $('upload-start').disabled = true;
    const total = files.reduce((a, f) => a + f.size, 0) || 1;
    const loaded = files.map(() => 0);
    let done = 0, failed = 0;
    const rows = files.map((f) => {
      const bar = el('div', {});
      const status = el('span', { class: 'muted', text: 'waiting' });
      const tr = el('tr', { 'data-file': f.name }, el('td', { text: f.name }),
        el('td', { style: 'width:40%' }, el('div', { class: 'progress' }, bar)), el('td', {}, status));
      list.append(tr);
      return { bar: bar, status: status, tr: tr };
    });
    function overall() {
      const fraction = loaded.reduce((a, b) => a + b, 0) / total;
      $('upload-overall-bar').style.width = (100 * fraction).toFixed(1) + '%';
      $('upload-overall-text').textContent = done + ' of ' + files.length + ' files' + (failed ? ', ' + failed + ' failed' : '');
    }
    overall();
    let next = 0;
    async function worker() {
      while (next < files.length) {
        const i = next++;
        const f = files[i], r = rows[i];
        r.status.textContent = 'uploading';
        const result = await uploadOne(f, category, labelMode, label, (fraction) => {
          loaded[i] = fraction * f.size; r.bar.style.width = (100 * fraction).toFixed(1) + '%'; overall();
        });
        loaded[i] = f.size; r.bar.style.width = '100%'; done++;
        if (result.ok) {
          r.status.className = 'ok'; r.status.textContent = 'done → ' + (result.sample.label || 'unlabelled') + ' · ' + result.sample.category;
          r.tr.dataset.state = 'done';
        } else {
          failed++; r.status.className = 'error'; r.status.textContent = result.error; r.tr.dataset.state = 'failed';
          r.bar.style.background = 'var(--danger)';
        }
        overall();
      }
    }
    await Promise.all([worker(), worker(), worker()]);
    $('upload-start').disabled = false;
    $('upload-files').value = '';
    await refresh();
  }

  if (cfg.canEdit) {
    $('upload-start').addEventListener('click', startUpload);
    $('import-start').addEventListener('click', async () => {
      const file = $('import-file').files[0];
      if (!file) return;
      $('import-result').className = 'muted'; $('import-result').textContent = 'importing…';
      try {
        const res = await fetch(api + '/import', { method: 'POST', body: file, credentials: 'same-origin',
          headers: { 'X-CSRFToken': studio.csrf(), 'Content-Type': 'application/zip' } });
        const data = await res.json();
        if (!res.ok) throw new Error(data.detail || res.statusText);
        $('import-result').className = 'ok';
        $('import-result').textContent = 'imported ' + data.count + ' samples' + (data.skipped.length ? ', skipped ' + data.skipped.join(', ') : '');
        await refresh();
      } catch (err) { $('import-result').className = 'error'; $('import-result').textContent = err.message; }
    });
  }

  showSummary(JSON.parse(document.getElementById('summary-data').textContent));
  refreshTable();
})();
