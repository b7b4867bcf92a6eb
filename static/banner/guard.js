/* consentproxy guard, the page's first script: holds what page scripts load from trackers of categories
 * not granted; releases it in order on a grant. See consentproxy/banner/guard.py. */
(function (T) {
  'use strict';

  const w = window;
  const d = document;
  const K = Symbol.for('consentproxy.guard');
  if (w[K]) return; // loaded twice
  w[K] = 1;
  const me = d.currentScript;
  let granted = new Set(((me && me.getAttribute('data-cp-granted')) || 'necessary').split(/\s+/));
  const hosts = new Map();
  for (const cat in T.c) T.c[cat].split(' ').forEach(h => hosts.set(h, cat));
  for (const h in T.p) hosts.set(h, T.p[h]);
  const ok = new Map(); // under hold: host → path prefixes not held
  (T.a || '').split(' ').forEach(e => {
    const i = (e + '/').indexOf('/');
    ok.set(e.slice(0, i), (ok.get(e.slice(0, i)) || []).concat(e.slice(i)));
  });
  const S = location.hostname.replace(/^www\./, '');
  const KIND = {SCRIPT: 'scripts', IFRAME: 'iframes'};
  const ATTRS = {SCRIPT: ['src'], IFRAME: ['src'], IMG: ['src', 'srcset'], LINK: ['href'], EMBED: ['src'],
    OBJECT: ['data']};
  const SEL = Object.keys(ATTRS).map(tag => ATTRS[tag].map(a => tag + '[' + a + ']')).join();
  const URLS = /(?:https?:)?\/\/[^\s"'`<>()\\]+/gi;
  // a template would not parse their markup alike
  const NATIVE = /^(?:script|style|textarea|title|iframe|noscript|template)$/;
  const queue = [];
  const pending = new WeakMap();
  const seen = new WeakSet();
  const quiet = new WeakSet(); // held iframes: the load of their about:blank is not for the page
  d.addEventListener('load', e => {
    if (quiet.has(e.target) && e.target.tagName === 'IFRAME') e.stopImmediatePropagation();
  }, true);
  const E = Element.prototype;
  const N = Node.prototype;
  const D = Document.prototype;
  const own = {set: E.setAttribute, remove: E.removeAttribute, insert: N.insertBefore, append: E.append,
    after: E.after, before: E.before, prepend: E.prepend, replaceWith: E.replaceWith};
  const inner = Object.getOwnPropertyDescriptor(E, 'innerHTML');
  let inert = null; // no browsing context: nothing parsed there loads
  let releasing = false;

  function category(url, kind) {
    let u;
    try {
      u = new URL(url && typeof url === 'object' && 'url' in url ? url.url : String(url), d.baseURI);
    } catch (err) {
      return '';
    }
    const host = u.hostname.replace(/\.$/, '');
    if (!/^https?:$/.test(u.protocol) || host === location.hostname) return ''; // own host
    const path = u.href.slice(u.href.indexOf('/', u.protocol.length + 2)).toLowerCase(); // keeps a bare ?
    for (let name = host; name.indexOf('.') > 0; name = name.slice(name.indexOf('.') + 1)) {
      const rule = hosts.get(name);
      if (rule === undefined) continue;
      if (typeof rule === 'string') return rule;
      let best = '';
      for (const prefix in rule) if (path.startsWith(prefix) && prefix.length >= best.length) best = prefix;
      return rule[best] || '';
    }
    const found = (T.u[kind] || []).find(p => u.href.toLowerCase().includes(p[0]));
    if (found) return found[1];
    for (let name = host; T.d && name; name = name.slice(name.indexOf('.') + 1 || name.length)) {
      if (name === S || (ok.get(name) || []).some(p => path.startsWith(p))) return '';
    }
    return T.d || '';
  }

  function held(value, kind) {
    const cat = category(value, kind);
    return cat && !granted.has(cat) ? cat : '';
  }

  function heldIn(text, kind) {
    for (const url of String(text).match(URLS) || []) {
      const cat = kind ? held(url, kind) : held(url, 'scripts') || held(url, 'iframes') || held(url, 'pixels');
      if (cat) return cat;
    }
    return '';
  }

  function heldAttr(el, attr, value) {
    const kind = KIND[el.tagName] || 'pixels';
    return attr === 'srcset' ? heldIn(value, kind) : held(value, kind);
  }

  function hold(cat, run) {
    const item = {cat, run};
    if (queue.length < 1e3) queue.push(item); // past that (a poller) dropped
    return item;
  }

  // in order, each after the previous one's load (100 ms at most)
  async function release() {
    if (releasing) return;
    releasing = true;
    for (let i; (i = queue.findIndex(item => granted.has(item.cat))) >= 0;) {
      const item = queue.splice(i, 1)[0];
      try {
        if (!item.dead) await Promise.race([item.run(), new Promise(done => setTimeout(done, 100))]);
      } catch (err) {
        console.warn('consentproxy guard:', err);
      }
    }
    releasing = false;
  }

  const settled = el => new Promise(done => {
    el.addEventListener('load', done, {once: true});
    el.addEventListener('error', done, {once: true});
  });

  d.addEventListener('consentproxy:change', e => {
    const list = e.detail && e.detail.granted;
    if (!Array.isArray(list)) return;
    granted = new Set(['necessary'].concat(list));
    release();
  });

  // An element the proxy blocked (stamped) is the banner's to release: click-to-load needs no grant.
  function intercept(el, attr, value, set) {
    try {
      if (!(ATTRS[el.tagName] || []).includes(attr) || el.hasAttribute('data-cp-stamp')) return false;
      const cat = heldAttr(el, attr, value);
      const map = pending.get(el) || {};
      if (map[attr]) map[attr].dead = true; // the newest value counts
      quiet[cat ? 'add' : 'delete'](el);
      map[attr] = cat && hold(cat, () => {
        map[attr] = '';
        quiet.delete(el);
        set.call(el, value);
        return settled(el);
      });
      pending.set(el, map);
      return !!cat;
    } catch (err) {
      return false;
    }
  }

  for (const tag in ATTRS) {
    ATTRS[tag].forEach(prop => {
      const proto = Object.getPrototypeOf(d.createElement(tag));
      const desc = Object.getOwnPropertyDescriptor(proto, prop);
      if (desc && desc.set) {
        Object.defineProperty(proto, prop, Object.assign({}, desc, {set(value) {
          if (!intercept(this, prop, value, desc.set)) desc.set.call(this, value);
        }}));
      }
    });
  }

  E.setAttribute = function (name, value) {
    if (!intercept(this, String(name).toLowerCase(), value, function (v) { own.set.call(this, name, v); })) {
      return own.set.apply(this, arguments);
    }
  };

  // parsed elements: a held script gets a type that never runs (inserted again on release)
  function neutralise(el, scripts) {
    if (seen.has(el)) return;
    seen.add(el);
    (ATTRS[el.tagName] || []).forEach(attr => {
      const value = el.getAttribute(attr);
      const cat = value === null ? '' : heldAttr(el, attr, value);
      if (!cat) return;
      if (el.tagName !== 'SCRIPT') {
        own.remove.call(el, attr);
        quiet.add(el);
        hold(cat, () => {
          quiet.delete(el);
          own.set.call(el, attr, value);
          return settled(el);
        });
      } else if (scripts) {
        const type = el.getAttribute('type');
        own.set.call(el, 'type', 'text/plain');
        hold(cat, () => {
          if (type === null) own.remove.call(el, 'type');
          else own.set.call(el, 'type', type);
          const parent = el.parentNode;
          if (!parent) return;
          const next = el.nextSibling;
          el.remove();
          own.insert.call(parent, el, next);
          return settled(el);
        });
      }
    });
  }

  function scan(node, scripts) {
    if (!node || node.isConnected || (node.nodeType !== 1 && node.nodeType !== 11)) return;
    if (node.nodeType === 1 && node.matches(SEL)) neutralise(node, scripts);
    if (node.firstElementChild) node.querySelectorAll(SEL).forEach(el => neutralise(el, scripts));
  }

  function wrap(proto, name, nodes) {
    const orig = proto[name];
    if (typeof orig !== 'function') return;
    proto[name] = function () {
      try {
        nodes(arguments).forEach(node => scan(node, true));
      } catch (err) {} // inserted as asked
      return orig.apply(this, arguments);
    };
  }
  const first = args => [args[0]];
  ['appendChild', 'insertBefore', 'replaceChild'].forEach(name => wrap(N, name, first));
  wrap(E, 'insertAdjacentElement', args => [args[1]]);
  [E, D, DocumentFragment.prototype].forEach(proto => {
    ['append', 'prepend', 'before', 'after', 'replaceWith', 'replaceChildren'].forEach(name => {
      if (proto.hasOwnProperty(name)) wrap(proto, name, Array.from);
    });
  });

  // innerHTML's scripts never run (a template), write's do (a document of its own)
  function markup(el, value, write) {
    try {
      if (!heldIn(value, '') || (el && (el.namespaceURI !== 'http://www.w3.org/1999/xhtml' ||
          NATIVE.test(el.localName)))) return null;
      let fragment;
      if (write) {
        inert = inert || d.implementation.createHTMLDocument('');
        const range = inert.createRange();
        range.selectNodeContents(inert.body);
        fragment = range.createContextualFragment(value);
      } else {
        const template = d.createElement('template');
        inner.set.call(template, value);
        fragment = template.content;
      }
      const count = queue.length;
      scan(fragment, write);
      return queue.length > count ? fragment : null; // else the call of the browser
    } catch (err) {
      return null;
    }
  }

  function setter(name, place) {
    const desc = Object.getOwnPropertyDescriptor(E, name);
    Object.defineProperty(E, name, Object.assign({}, desc, {set(value) {
      const context = name === 'outerHTML' ? this.parentNode : this;
      const fragment = context && context.nodeType === 1 ? markup(context, value) : null;
      if (!fragment) return desc.set.call(this, value);
      place.call(this, fragment);
    }}));
  }
  setter('innerHTML', function (fragment) {
    this.textContent = '';
    own.append.call(this, fragment);
  });
  setter('outerHTML', own.replaceWith);

  const adjacent = E.insertAdjacentHTML;
  const PLACE = {beforebegin: own.before, afterbegin: own.prepend, beforeend: own.append, afterend: own.after};
  E.insertAdjacentHTML = function (where, value) {
    const place = PLACE[String(where).toLowerCase()];
    const context = place === own.before || place === own.after ? this.parentNode : this;
    const fragment = place && context && context.nodeType === 1 ? markup(context, value) : null;
    if (!fragment) return adjacent.apply(this, arguments);
    place.call(this, fragment);
  };

  const after = new WeakMap(); // where the parser would put it
  ['write', 'writeln'].forEach(name => {
    const orig = D[name];
    D[name] = function (value) {
      const script = d.currentScript;
      const fragment = this === d && arguments.length === 1 ? markup(null, value, true) : null;
      if (!fragment) return orig.apply(this, arguments);
      const last = fragment.lastChild;
      const mark = script && (after.get(script) || script);
      if (mark && mark.parentNode) own.insert.call(mark.parentNode, fragment, mark.nextSibling);
      else own.append.call(d.body || d.documentElement, fragment);
      if (script && last) after.set(script, last);
    };
  });

  const nav = w.navigator;
  const beacon = nav.sendBeacon;
  if (beacon) {
    nav.sendBeacon = function (url, data) {
      const cat = held(url, 'pixels');
      if (!cat) return beacon.apply(nav, arguments);
      hold(cat, () => {
        beacon.call(nav, url, data);
        return new Promise(() => {}); // sent later: wait the 100 ms
      });
      return true; // queued
    };
  }

  const fetch = w.fetch;
  if (fetch) {
    w.fetch = function (input) {
      const args = arguments;
      const cat = held(input, 'pixels');
      if (!cat) return fetch.apply(w, args);
      return new Promise((resolve, reject) => hold(cat, () => {
        const answer = fetch.apply(w, args);
        answer.then(resolve, reject);
        return answer.catch(() => {});
      }));
    };
  }

  const X = XMLHttpRequest.prototype;
  const open = X.open;
  const send = X.send;
  const target = new WeakMap();
  X.open = function (method, url) {
    target.set(this, category(url, 'pixels'));
    return open.apply(this, arguments);
  };
  X.send = function () {
    const cat = target.get(this);
    if (!cat || granted.has(cat)) return send.apply(this, arguments);
    const args = arguments;
    hold(cat, () => new Promise(done => {
      this.addEventListener('loadend', done, {once: true});
      send.apply(this, args);
    }));
  };
}(/*table*/{c: {}, p: {}, u: {}}));
