// Deployment, model and uploaded-model pages: build jobs with live progress, bundle list with reports.
(function () {
  const el = function (tag, attrs, text) { return studioJobs.el(tag, attrs, text); };

  function bytes(n) {
    if (n === undefined || n === null) { return ''; }
    if (n < 1024) { return n + ' B'; }
    if (n < 1024 * 1024) { return (n / 1024).toFixed(1) + ' KB'; }
    return (n / 1024 / 1024).toFixed(2) + ' MB';
  }

  // The verification steps as green/red/grey badges, with each step's output on demand.
  function reportView(report) {
    const box = el('div', { class: 'report', 'data-testid': 'deploy-report' });
    const verdict = el('span', { class: 'badge ' + (report.ok ? 'ok' : 'failed'), 'data-testid': 'deploy-verdict' },
      report.ok ? 'verified' : 'verification failed');
    box.append(verdict, ' ');
    (report.steps || []).forEach(function (s) {
      const cls = s.status === 'ok' ? 'ok' : s.status === 'failed' ? 'failed' : '';
      const b = el('span', { class: 'badge ' + cls, title: s.detail || s.reason || s.note || '', 'data-step': s.name,
                             'data-status': s.status }, s.name + ': ' + s.status);
      box.append(b, ' ');
    });
    if (report.note) { box.append(el('div', { class: 'muted' }, report.note)); }
    const details = el('details');
    details.append(el('summary', {}, 'details'));
    const lines = [];
    (report.steps || []).forEach(function (s) {
      lines.push('## ' + s.name + ' — ' + s.status + (s.detail ? ': ' + s.detail : '') + (s.reason ? ' (' + s.reason + ')' : ''));
      if (s.output) { lines.push(s.output); }
    });
    if (report.arm) { lines.push('Cortex-M4 library: flash ' + report.arm.flash + ' B, RAM ' + report.arm.ram + ' B'); }
    if (report.host) { lines.push('host: ' + JSON.stringify(report.host)); }
    if (report.qemu) { lines.push('QEMU: ' + JSON.stringify(report.qemu)); }
    if (report.checks) { lines.push('checks: ' + JSON.stringify(report.checks)); }
    details.append(el('pre', { class: 'log' }, lines.join('\n')));
    box.append(details);
    return box;
  }

  function deploymentRow(d) {
    const tr = el('tr', { 'data-deployment': String(d.id), 'data-target': d.target });
    tr.append(el('td', {}, '#' + d.id), el('td', {}, d.target_label || d.target));
    const model = el('td'); model.append(el('a', { href: '/projects/' + d.project + '/models/' + d.model + '/' },
      '#' + d.model + (d.impulse_version ? ' (impulse v' + d.impulse_version + ')' : '')));
    const file = el('td'); file.append(el('a', { href: d.download_url, 'data-testid': 'deploy-download', download: d.file_name }, d.file_name));
    const sha = el('td'); sha.append(el('code', { title: d.sha256 }, d.sha256.slice(0, 16) + '…'));
    const rep = el('td'); rep.append(reportView(d.report || {}));
    tr.append(model, file, el('td', {}, bytes(d.size)), sha, rep, el('td', {}, new Date(d.created_at).toLocaleString()));
    return tr;
  }

  function fillTable(table, rows) {
    while (table.rows.length > 1) { table.deleteRow(1); }
    if (!rows.length) { const tr = el('tr'); tr.append(el('td', { colspan: '8', class: 'muted' }, 'No bundles yet.')); table.append(tr); }
    rows.forEach(function (d) { table.append(deploymentRow(d)); });
  }

  function deploymentPage(opts) {
    const table = document.getElementById('deployments-table');
    fillTable(table, opts.deployments || []);
    async function reload() { fillTable(table, await studio.api('GET', '/api/v1/projects/' + opts.project + '/deployments')); }
    function watchJob(job) {
      studioJobs.panel(document.getElementById('deploy-job'), job, {
        canEdit: opts.canEdit, jobUrl: '/projects/' + opts.project + '/jobs/' + job.id,
        onDone: function () { reload(); },
      });
    }
    if (opts.running) { watchJob(opts.running); }
    const button = document.getElementById('deploy-build');
    if (button) {
      button.addEventListener('click', async function () {
        const err = document.getElementById('deploy-error'); err.textContent = '';
        try {
          const job = await studio.api('POST', '/api/v1/projects/' + opts.project + '/deployments', {
            model: Number(document.getElementById('deploy-model').value),
            target: document.getElementById('deploy-target').value,
          });
          watchJob(job);
        } catch (e) { err.textContent = e.message; }
      });
    }
  }

  window.studioDeploy = { deploymentPage: deploymentPage, reportView: reportView, fillTable: fillTable, bytes: bytes };
})();
