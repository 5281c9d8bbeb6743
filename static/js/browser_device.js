// "This browser as a device": speaks docs/device-protocol.md over /ws/device like a board does.
// The accelerometer (DeviceMotionEvent) streams continuously with acks and resends; recordings are
// marked with streamMark; the microphone (getUserMedia, 16 kHz WAV) and camera (JPEG snapshot) upload
// through the ingestion API; remote sampling requests from the Devices page are answered.
(function () {
  'use strict';
  const cfg = window.BROWSER_DEVICE;
  const $ = (id) => document.getElementById(id);
  const INTERVAL_MS = 16;          // DeviceMotionEvent fires at about 60 Hz on phones
  const FRAME_MS = 100;            // one stream frame per 100 ms
  const FATAL = {4001: 'API key refused', 4003: 'hello refused', 4004: 'bad frame', 4005: 'bad values',
                 4009: 'another tab or browser took over this device id', 4013: 'frame too large'};
  const AXES = ['accX', 'accY', 'accZ'];

  function browserId() {
    let id = localStorage.getItem('studio-browser-id');
    if (!id) {
      const bytes = new Uint8Array(4);
      crypto.getRandomValues(bytes);
      id = 'browser-' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
      localStorage.setItem('studio-browser-id', id);
    }
    return id;
  }

  const state = {
    key: null, ws: null, connected: false, backoff: 250,
    frames: new Map(),   // seq -> rows, kept until acknowledged
    nextSeq: 0, numbered: false, current: [], rowsStreamed: 0, rowsAcked: 0,
    markWaiter: null, recorders: [], sampling: false,
  };
  const deviceId = browserId();
  $('bd-device-id').value = deviceId;

  function status(text, ok) {
    const el = $('bd-status');
    el.textContent = text;
    el.className = 'badge' + (ok ? ' ok' : '');
  }
  function error(text) { $('bd-error').textContent = text || ''; }

  function send(message) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) { state.ws.send(JSON.stringify(message)); return true; }
    return false;
  }

  function sendFrom(seq) {
    if (!state.connected) return;
    const seqs = Array.from(state.frames.keys()).filter((s) => s >= seq).sort((a, b) => a - b);
    for (const s of seqs) send({stream: {seq: s, values: state.frames.get(s)}});
  }

  function acknowledge(seq) {
    for (const s of Array.from(state.frames.keys())) {
      if (s <= seq) { state.rowsAcked += state.frames.get(s).length; state.frames.delete(s); }
    }
    $('bd-acked').textContent = state.rowsAcked;
  }

  function hello() {
    return {hello: {version: 3, apiKey: state.key, deviceId: deviceId, deviceType: 'BROWSER', connection: 'ip',
      sensors: [{name: 'Accelerometer', maxSampleLengthS: 300, frequencies: [1000 / INTERVAL_MS]},
                {name: 'Microphone', maxSampleLengthS: 10, frequencies: [16000]},
                {name: 'Camera', maxSampleLengthS: 0, frequencies: []}]}};
  }

  function connect() {
    if (!state.key) return;
    status('connecting…');
    const ws = new WebSocket(studio.wsUrl('/ws/device'));
    state.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify(hello()));
    ws.onmessage = (ev) => handle(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      state.connected = false;
      setButtons();
      if (FATAL[ev.code]) { status('closed'); error(FATAL[ev.code] + (ev.reason ? ': ' + ev.reason : '')); return; }
      status('reconnecting…');
      setTimeout(connect, state.backoff * (0.5 + Math.random() / 2));
      state.backoff = Math.min(5000, state.backoff * 2);
    };
  }

  function handle(msg) {
    if (msg.hello === true) {
      send({streamStart: {interval_ms: INTERVAL_MS, sensors: AXES.map((n) => ({name: n, units: 'm/s2'}))}});
    } else if (msg.hello === false) {
      error(msg.err);
    } else if (msg.streamStart === true) {
      if (!state.numbered) {
        // A device id the server already knows: continue its numbering.
        const first = state.frames.size ? Math.min(...state.frames.keys()) : state.nextSeq;
        const shift = msg.next - first;
        if (shift) {
          const moved = new Map();
          for (const [s, rows] of state.frames) moved.set(s + shift, rows);
          state.frames = moved;
          state.nextSeq += shift;
        }
        state.numbered = true;
      }
      acknowledge(msg.next - 1);
      state.connected = true;
      state.backoff = 250;
      status('connected', true);
      error('');
      setButtons();
      sendFrom(msg.next);
    } else if (msg.streamAck) {
      acknowledge(msg.streamAck.seq);
    } else if (msg.streamResend) {
      sendFrom(msg.streamResend.from);
    } else if ('streamMark' in msg) {
      if (state.markWaiter) { state.markWaiter(msg); state.markWaiter = null; }
    } else if (msg.sample && typeof msg.sample === 'object') {
      remoteSample(msg.sample);
    } else if (msg.warning) {
      $('bd-motion-note').textContent = msg.warning;
    } else if (msg.err) {
      error(msg.err);
    }
  }

  // --- accelerometer ----------------------------------------------------------------------------
  function onMotion(e) {
    const a = e.accelerationIncludingGravity || e.acceleration;
    if (!a || a.x === null || a.x === undefined) return;
    const row = [a.x, a.y, a.z].map((v) => Math.round(v * 10000) / 10000);
    state.current.push(row);
    state.rowsStreamed += 1;
    for (const r of state.recorders) if (r.kind === 'motion') r.rows.push(row);
  }
  window.addEventListener('devicemotion', onMotion);

  function cutFrame() {
    $('bd-rows').textContent = state.rowsStreamed;
    if (!state.key) { state.current = []; return; }   // not connecting: nothing to keep
    if (!state.current.length) return;
    const seq = state.nextSeq++;
    state.frames.set(seq, state.current);
    state.current = [];
    if (state.connected) send({stream: {seq: seq, values: state.frames.get(seq)}});
  }
  setInterval(cutFrame, FRAME_MS);

  function waitAcked(timeoutMs) {
    return new Promise((resolve) => {
      const start = Date.now();
      const poll = () => {
        if (!state.frames.size || Date.now() - start > timeoutMs) resolve(!state.frames.size);
        else setTimeout(poll, 20);
      };
      poll();
    });
  }

  function mark(body) {
    return new Promise((resolve) => { state.markWaiter = resolve; send({streamMark: body}); });
  }

  $('bd-rec-start').onclick = async () => {
    const reply = await mark({action: 'start', label: $('bd-label').value, category: $('bd-category').value});
    $('bd-rec-status').textContent = reply.streamMark ? 'Recording “' + $('bd-label').value + '”…' : reply.err;
    if (reply.streamMark) { $('bd-rec-start').disabled = true; $('bd-rec-stop').disabled = false; }
  };
  $('bd-rec-stop').onclick = async () => {
    cutFrame();
    await waitAcked(10000);    // the sample holds everything streamed before the click
    const reply = await mark({action: 'stop'});
    const el = $('bd-rec-status');
    if (reply.streamMark && reply.sampleId) {
      el.textContent = 'Saved sample #' + reply.sampleId + ' (' + reply.values + ' rows)';
      el.dataset.sampleId = reply.sampleId;
    } else {
      el.textContent = reply.err || reply.note || 'nothing was recorded';
    }
    $('bd-rec-start').disabled = false;
    $('bd-rec-stop').disabled = true;
  };

  function setButtons() {
    const on = state.connected;
    $('bd-rec-start').disabled = !on;
    $('bd-audio').disabled = !on;
    $('bd-snapshot').disabled = !on;
    if (!on) $('bd-rec-stop').disabled = true;
  }

  // --- uploads through the ingestion API, signed as the reference clients sign -------------------------
  async function hmacHex(key, text) {
    const enc = new TextEncoder();
    const k = await crypto.subtle.importKey('raw', enc.encode(key), {name: 'HMAC', hash: 'SHA-256'}, false, ['sign']);
    const sig = await crypto.subtle.sign('HMAC', k, enc.encode(text));
    return Array.from(new Uint8Array(sig), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  async function signedJson(values, intervalMs, sensors, hmacKey) {
    // crypto.subtle exists only in secure contexts (https, localhost); elsewhere the sample goes unsigned.
    const canSign = !!(hmacKey && window.crypto && crypto.subtle);
    const zeros = '0'.repeat(64);
    const doc = {protected: {ver: 'v1', alg: canSign ? 'HS256' : 'none', iat: Math.floor(Date.now() / 1000)},
      signature: zeros, payload: {device_name: deviceId, device_type: 'BROWSER', interval_ms: intervalMs,
        sensors: sensors, values: values}};
    let text = JSON.stringify(doc);
    if (canSign) text = text.replace(zeros, await hmacHex(hmacKey, text));
    return text;
  }

  async function upload(path, label, fileName, body, contentType) {
    const res = await fetch(path, {method: 'POST', body: body, headers: {'x-api-key': state.key, 'x-label': label,
      'x-file-name': fileName, 'content-type': contentType, 'x-upload-source': 'browser-device'}});
    const text = await res.text();
    if (!res.ok) throw new Error('upload refused (' + res.status + '): ' + text);
    return text.trim();
  }

  // --- microphone ---------------------------------------------------------------------------------
  async function recordAudio(seconds) {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    const ctx = new AudioContext();
    await ctx.resume();   // a context made after an await may start suspended (autoplay policy)
    const source = ctx.createMediaStreamSource(stream);
    const proc = ctx.createScriptProcessor(4096, 1, 1);
    const chunks = [];
    proc.onaudioprocess = (e) => chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    source.connect(proc);
    proc.connect(ctx.destination);
    const wanted = Math.round(seconds * ctx.sampleRate);
    await new Promise((resolve) => {
      const check = () => (chunks.reduce((n, c) => n + c.length, 0) >= wanted ? resolve() : setTimeout(check, 50));
      check();
    });
    proc.disconnect(); source.disconnect();
    stream.getTracks().forEach((t) => t.stop());
    await ctx.close();
    const all = new Float32Array(chunks.reduce((n, c) => n + c.length, 0));
    let o = 0;
    for (const c of chunks) { all.set(c, o); o += c.length; }
    // Down-sample to 16 kHz (averaging each window), as keyword spotting models expect.
    const ratio = ctx.sampleRate / 16000;
    const n = Math.floor(seconds * 16000);
    const pcm = new Int16Array(n);
    for (let i = 0; i < n; i++) {
      const a = Math.floor(i * ratio), b = Math.max(a + 1, Math.floor((i + 1) * ratio));
      let sum = 0;
      for (let j = a; j < b && j < all.length; j++) sum += all[j];
      pcm[i] = Math.max(-32768, Math.min(32767, Math.round(sum / (b - a) * 32767)));
    }
    return pcm;
  }

  function wav(pcm, rate) {
    const buf = new ArrayBuffer(44 + pcm.length * 2);
    const v = new DataView(buf);
    const str = (o, s) => { for (let i = 0; i < s.length; i++) v.setUint8(o + i, s.charCodeAt(i)); };
    str(0, 'RIFF'); v.setUint32(4, 36 + pcm.length * 2, true); str(8, 'WAVE'); str(12, 'fmt ');
    v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true); v.setUint32(24, rate, true);
    v.setUint32(28, rate * 2, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true); str(36, 'data');
    v.setUint32(40, pcm.length * 2, true);
    for (let i = 0; i < pcm.length; i++) v.setInt16(44 + i * 2, pcm[i], true);
    return new Blob([buf], {type: 'audio/wav'});
  }

  // --- camera ------------------------------------------------------------------------------------
  async function snapshot() {
    const stream = await navigator.mediaDevices.getUserMedia({video: {width: 320, height: 240}});
    const video = $('bd-video');
    video.srcObject = stream;
    video.style.display = 'block';
    await video.play();
    await new Promise((r) => setTimeout(r, 300));   // let the sensor settle on its exposure
    const canvas = document.createElement('canvas');
    canvas.width = video.videoWidth || 320;
    canvas.height = video.videoHeight || 240;
    canvas.getContext('2d').drawImage(video, 0, 0, canvas.width, canvas.height);
    stream.getTracks().forEach((t) => t.stop());
    video.style.display = 'none';
    return await new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.9));
  }

  function category() { return $('bd-category').value; }
  function stamp() { return new Date().toISOString().replace(/[:.]/g, '-'); }

  $('bd-audio').onclick = async () => {
    const el = $('bd-media-status');
    try {
      el.textContent = 'Recording audio…';
      const pcm = await recordAudio(parseFloat($('bd-audio-s').value) || 1);
      const name = await upload('/api/' + category() + '/data', $('bd-label').value, 'audio-' + stamp() + '.wav',
                                wav(pcm, 16000), 'audio/wav');
      el.textContent = 'Uploaded ' + name;
      el.dataset.uploaded = (parseInt(el.dataset.uploaded || '0', 10) + 1).toString();
    } catch (e) { el.textContent = 'Audio failed: ' + e.message; }
  };
  $('bd-snapshot').onclick = async () => {
    const el = $('bd-media-status');
    try {
      el.textContent = 'Taking a snapshot…';
      const jpeg = await snapshot();
      const name = await upload('/api/' + category() + '/data', $('bd-label').value, 'snapshot-' + stamp() + '.jpg',
                                jpeg, 'image/jpeg');
      el.textContent = 'Uploaded ' + name;
      el.dataset.uploaded = (parseInt(el.dataset.uploaded || '0', 10) + 1).toString();
    } catch (e) { el.textContent = 'Snapshot failed: ' + e.message; }
  };

  // --- remote sampling (Edge Impulse's protocol) ----------------------------------------------------
  async function remoteSample(req) {
    const el = $('bd-sampling');
    const path = req.path || '/api/training/data';
    try {
      send({sample: true});
      send({sampleStarted: true});
      el.textContent = 'Sampling ' + req.sensor + ' for ' + req.length + ' ms…';
      let body, type, name;
      if (req.sensor === 'Microphone') {
        const pcm = await recordAudio(req.length / 1000);
        body = wav(pcm, 16000); type = 'audio/wav'; name = req.label + '.wav';
      } else if (req.sensor === 'Camera') {
        body = await snapshot(); type = 'image/jpeg'; name = req.label + '.jpg';
      } else {
        const rec = {kind: 'motion', rows: []};
        state.recorders.push(rec);
        const start = Date.now();
        while (Date.now() - start < req.length) {
          await new Promise((r) => setTimeout(r, 250));
          send({sampleReading: true, progressPercentage: Math.min(99, Math.round(100 * (Date.now() - start) / req.length))});
        }
        state.recorders.splice(state.recorders.indexOf(rec), 1);
        if (!rec.rows.length) throw new Error('no motion data: this browser has no accelerometer');
        body = await signedJson(rec.rows, INTERVAL_MS, AXES.map((n) => ({name: n, units: 'm/s2'})), req.hmacKey);
        type = 'application/json'; name = req.label + '.json';
      }
      send({sampleUploading: true});
      await upload(path, req.label, name, body, type);
      send({sampleFinished: true});
      el.textContent = 'Sample “' + req.label + '” uploaded';
    } catch (e) {
      send({sample: false, error: String(e.message || e).slice(0, 200)});
      el.textContent = 'Sampling failed: ' + e.message;
    }
  }

  // --- connecting -------------------------------------------------------------------------------------
  async function start(key) {
    state.key = key;
    if (typeof DeviceMotionEvent !== 'undefined' && typeof DeviceMotionEvent.requestPermission === 'function') {
      try { await DeviceMotionEvent.requestPermission(); } catch (e) { /* iOS: the user said no */ }
    }
    if (state.ws) { state.ws.onclose = null; state.ws.close(); }
    connect();
  }
  const btn = $('bd-connect-btn');
  if (btn) {
    btn.onclick = async () => {
      try {
        const data = await studio.api('POST', cfg.keyUrl, {browser_id: deviceId});
        start(data.api_key);
      } catch (e) { error(e.message); }
    };
  }
  $('bd-connect-key').onclick = () => start($('bd-key').value.trim());
})();
