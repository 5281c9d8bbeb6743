// Job panels: progress, status, log and (for training) a live loss/accuracy chart fed by /ws/jobs/<id>.
// Protocol: projects/consumers.py (state on connect and on every status change, progress events between).
(function () {
  const FINAL = ['succeeded', 'failed', 'cancelled'];

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in (attrs || {})) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  // Watch a job over its websocket; reconnects while the job is not final.
  function watch(jobId, on) {
    let closed = false, ws = null, final = false;
    function connect() {
      ws = new WebSocket(studio.wsUrl('/ws/jobs/' + jobId));
      ws.onmessage = function (m) {
        const ev = JSON.parse(m.data);
        if (ev.type === 'state') { final = FINAL.indexOf(ev.job.status) >= 0; on.state && on.state(ev.job); }
        else if (ev.type === 'progress') { on.progress && on.progress(ev); }
      };
      ws.onclose = function (e) {
        if (!closed && !final && e.code !== 4401 && e.code !== 4404) { setTimeout(connect, 1000); }
      };
    }
    connect();
    return { close: function () { closed = true; if (ws) { ws.close(); } } };
  }

  // A uPlot chart of per-epoch training metrics: losses on the left axis, accuracies on the right.
  function epochChart(target) {
    const keys = ['loss', 'val_loss', 'accuracy', 'val_accuracy'];
    const colours = { loss: '#dc2626', val_loss: '#f59e0b', accuracy: '#2563eb', val_accuracy: '#059669' };
    const rows = [];
    const opts = {
      width: Math.max(320, target.clientWidth || 640), height: 260,
      scales: { x: { time: false }, acc: { range: [0, 1] } },
      series: [{ label: 'epoch' }].concat(keys.map(function (k) {
        return { label: k, stroke: colours[k], width: 2, scale: k.indexOf('acc') >= 0 ? 'acc' : 'y' };
      })),
      axes: [{ label: 'epoch' }, { scale: 'y', label: 'loss' }, { scale: 'acc', side: 1, label: 'accuracy', grid: { show: false } }],
    };
    const plot = new uPlot(opts, [[], [], [], [], []], target);
    function redraw() {
      const data = [rows.map(function (r) { return r.epoch; })];
      keys.forEach(function (k) { data.push(rows.map(function (r) { return r[k] === undefined ? null : r[k]; })); });
      plot.setData(data);
      target.dataset.points = String(rows.length);
    }
    return {
      set: function (epochs) { rows.length = 0; (epochs || []).forEach(function (r) { rows.push(r); }); redraw(); },
      add: function (row) {
        if (!row || row.epoch === undefined) { return; }
        if (rows.length && rows[rows.length - 1].epoch >= row.epoch) { return; }
        rows.push(row); redraw();
      },
    };
  }

  // A panel for one job: badge, message, progress, cancel, log and an optional epoch chart.
  function panel(root, job, options) {
    options = options || {};
    root.innerHTML = '';
    root.classList.add('jobpanel');
    const head = el('div', { class: 'jobhead' });
    const link = el('a', { href: options.jobUrl || '#' }, 'Job ' + job.id + ' (' + job.kind + ')');
    const badge = el('span', { class: 'badge', 'data-testid': 'job-status' });
    const message = el('span', { class: 'muted jobmessage' });
    const cancel = el('button', { class: 'small danger', type: 'button' }, 'Cancel');
    head.append(link, ' ', badge, ' ', message, ' ', cancel);
    const bar = el('div', { class: 'progress' });
    const fill = el('div'); bar.append(fill);
    const error = el('p', { class: 'error' });
    let chart = null;
    if (options.chart) { const c = el('div', { class: 'chart', 'data-testid': 'epoch-chart' }); root.append(head, bar, error, c); chart = epochChart(c); }
    else { root.append(head, bar, error); }
    const log = el('pre', { class: 'log', 'data-testid': 'job-log' });
    if (options.log !== false) { root.append(log); }
    let finalSeen = false;

    function show(state) {
      badge.textContent = state.status;
      badge.className = 'badge ' + (state.status === 'succeeded' ? 'ok' : state.status === 'failed' ? 'failed' : '');
      message.textContent = state.message || '';
      fill.style.width = Math.round(100 * (state.progress || 0)) + '%';
      error.textContent = state.error || '';
      cancel.style.display = FINAL.indexOf(state.status) >= 0 || !options.canEdit ? 'none' : '';
      if (chart && state.result && state.result.epochs) { chart.set(state.result.epochs); }
      if (state.log !== undefined) { log.textContent = state.log; log.scrollTop = log.scrollHeight; }
    }
    function refresh() {
      return studio.api('GET', '/api/v1/jobs/' + job.id).then(function (j) { show(j); return j; });
    }
    cancel.addEventListener('click', function () {
      cancel.disabled = true;
      studio.api('POST', '/api/v1/jobs/' + job.id + '/cancel').catch(function (e) { error.textContent = e.message; });
    });
    show(job);
    const watcher = watch(job.id, {
      state: function (s) {
        show(s);
        // the log is not part of the state event: fetch it once on (re)connect and at the end
        refresh().then(function (j) {
          if (FINAL.indexOf(j.status) >= 0 && !finalSeen) { finalSeen = true; options.onDone && options.onDone(j); }
        });
      },
      progress: function (ev) {
        if (ev.progress !== undefined) { fill.style.width = Math.round(100 * ev.progress) + '%'; }
        if (ev.message) { message.textContent = ev.message; }
        if (ev.log) { log.textContent += ev.log + '\n'; log.scrollTop = log.scrollHeight; }
        if (chart && ev.metrics) { chart.add(ev.metrics); }
      },
    });
    return { chart: chart, close: watcher.close, refresh: refresh };
  }

  // Confusion matrix as a table: rows true labels, columns predicted (+ "uncertain").
  function confusion(target, labels, matrix, columns) {
    columns = columns || labels;
    const t = el('table', { class: 'table confusion', 'data-testid': 'confusion-matrix' });
    const head = el('tr'); head.append(el('th', {}, 'true \\ predicted'));
    columns.forEach(function (c) { head.append(el('th', {}, c)); });
    t.append(head);
    matrix.forEach(function (row, i) {
      const tr = el('tr'); tr.append(el('th', {}, labels[i]));
      const total = row.reduce(function (a, b) { return a + b; }, 0) || 1;
      row.forEach(function (v, j) {
        const td = el('td', {}, String(v));
        const share = v / total;
        td.style.background = (i === j ? 'rgba(5,150,105,' : 'rgba(220,38,38,') + (0.08 + 0.6 * share).toFixed(2) + ')';
        tr.append(td);
      });
      t.append(tr);
    });
    target.innerHTML = ''; target.append(t);
  }

  async function start(projectId, kind, extra) {
    return studio.api('POST', '/api/v1/projects/' + projectId + '/jobs', Object.assign({ kind: kind }, extra || {}));
  }

  const PALETTE = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#4b5563', '#ea580c'];

  window.studioJobs = { watch: watch, panel: panel, epochChart: epochChart, confusion: confusion, start: start,
                        FINAL: FINAL, PALETTE: PALETTE, el: el };
})();
