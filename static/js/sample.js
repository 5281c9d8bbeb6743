// One sample's page: a uPlot chart of every axis (or the waveform of audio), edits, crop and split.
(function () {
  const cfg = window.SAMPLE_PAGE;
  const sample = JSON.parse(document.getElementById('sample-data').textContent);
  const api = '/api/v1/projects/' + cfg.project + '/samples/' + sample.id;
  const $ = (id) => document.getElementById(id);
  const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#ca8a04', '#db2777'];
  const mark = Number(new URLSearchParams(location.search).get('t'));

  async function drawChart() {
    if (sample.kind === 'image' || !$('chart')) return;
    try {
      const width = Math.max(320, $('chart').clientWidth || 900);
      const d = await studio.api('GET', api + '/data?max_points=' + Math.min(8000, Math.round(width * 4)));
      const series = [{ label: 'ms' }].concat(d.sensors.map((s, i) => ({
        label: s.name + (s.units && s.units !== 'wav' ? ' (' + s.units + ')' : ''),
        stroke: COLORS[i % COLORS.length], width: 1, points: { show: false },
      })));
      const opts = {
        width: width, height: 320, series: series,
        scales: { x: { time: false } },
        // Audio values are 16-bit PCM (up to 32767): give the value axis room for five digits.
        axes: [{ label: 'time (ms)' }, { size: 70 }],
        cursor: { drag: { x: true, y: false, setScale: false } },
        hooks: {
          setSelect: [(u) => {
            if (!cfg.canEdit || !$('crop-start') || u.select.width < 2) return;
            $('crop-start').value = Math.max(0, u.posToVal(u.select.left, 'x')).toFixed(1);
            $('crop-end').value = Math.min(d.duration_ms, u.posToVal(u.select.left + u.select.width, 'x')).toFixed(1);
          }],
          draw: [(u) => {
            if (!(mark >= 0) || !new URLSearchParams(location.search).has('t')) return;
            const x = u.valToPos(mark, 'x', true);
            u.ctx.save(); u.ctx.strokeStyle = '#f59e0b'; u.ctx.lineWidth = 2;
            u.ctx.beginPath(); u.ctx.moveTo(x, u.bbox.top); u.ctx.lineTo(x, u.bbox.top + u.bbox.height); u.ctx.stroke(); u.ctx.restore();
          }],
        },
      };
      $('chart').replaceChildren();
      new uPlot(opts, [d.t].concat(d.series), $('chart'));
      $('chart').dataset.ready = '1';
      $('chart-note').textContent = d.length + ' values per axis at ' + (+d.frequency_hz.toFixed(3)) + ' Hz' +
        (d.downsampled ? ' (drawn as the min and max of each of ' + d.t.length / 2 + ' buckets)' : '');
    } catch (err) { $('view-error').textContent = 'Cannot draw the sample: ' + err.message; }
  }

  async function edit(body, message) {
    $('edit-error').textContent = ''; $('edit-ok').textContent = '';
    try {
      const s = await studio.api('PATCH', api, body);
      Object.assign(sample, s);
      $('sample-label').textContent = s.label || 'unlabelled';
      $('sample-category').textContent = s.category;
      $('sample-enabled').textContent = s.enabled ? 'enabled' : 'disabled';
      $('sample-enabled').className = 'badge ' + (s.enabled ? 'ok' : 'failed');
      $('toggle-enabled').textContent = s.enabled ? 'Disable' : 'Enable';
      $('edit-ok').textContent = message;
    } catch (err) { $('edit-error').textContent = err.message; }
  }

  if (cfg.canEdit) {
    $('save-label').addEventListener('click', () => edit({ label: $('edit-label').value }, 'Label saved.'));
    $('save-category').addEventListener('click', () => edit({ category: $('edit-category').value }, 'Moved.'));
    $('toggle-enabled').addEventListener('click', () => edit({ enabled: !sample.enabled }, sample.enabled ? 'Disabled.' : 'Enabled.'));
    $('delete-sample').addEventListener('click', async () => {
      if (!confirm('Delete ' + sample.file_name + '?')) return;
      try { await studio.api('DELETE', api); location.href = cfg.dataUrl; } catch (err) { $('edit-error').textContent = err.message; }
    });
    if ($('crop')) {
      $('crop').addEventListener('click', async () => {
        $('edit-error').textContent = '';
        try {
          await studio.api('POST', api + '/crop', { start_ms: Number($('crop-start').value), end_ms: Number($('crop-end').value) });
          location.reload();
        } catch (err) { $('edit-error').textContent = err.message; }
      });
      $('split').addEventListener('click', async () => {
        $('edit-error').textContent = '';
        try {
          const windows = await studio.api('POST', api + '/split', { length_ms: Number($('split-length').value) });
          location.href = cfg.dataUrl + '/' + windows[0].id;
        } catch (err) { $('edit-error').textContent = err.message; }
      });
    }
  }
  drawChart();
})();
