// Small helpers shared by the pages: CSRF-aware fetch and a websocket URL builder.
(function () {
  function cookie(name) {
    const m = document.cookie.match('(^|;)\\s*' + name + '\\s*=\\s*([^;]+)');
    return m ? decodeURIComponent(m.pop()) : '';
  }
  window.studio = {
    csrf: function () { return cookie('csrftoken'); },
    api: async function (method, url, body) {
      const opts = { method: method, headers: { 'X-CSRFToken': cookie('csrftoken') }, credentials: 'same-origin' };
      if (body instanceof FormData) { opts.body = body; }
      else if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
      const res = await fetch(url, opts);
      let data = null;
      const type = res.headers.get('content-type') || '';
      if (type.indexOf('json') >= 0) { data = await res.json(); } else { data = await res.text(); }
      if (!res.ok) { const err = new Error((data && data.detail) || data || res.statusText); err.status = res.status; err.data = data; throw err; }
      return data;
    },
    wsUrl: function (path) { return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path; },
  };
})();
