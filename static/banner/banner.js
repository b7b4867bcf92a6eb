/* consentproxy banner: wires the server-rendered first layer, builds the
 * settings dialog from #cp-config and re-activates blocked elements once their
 * category is granted. Written for a strict CSP with Trusted Types: the DOM is
 * built with createElement/textContent only and no inline style is ever set.
 *
 * The banner lives in the shadow root of #cp-root (declarative, parsed from the
 * server's markup; attached here for a browser that does not parse it), where
 * no stylesheet of the page reaches. Events from inside it reach the document
 * retargeted to #cp-root: the real target is the first of composedPath(), the
 * focused element the shadow root's activeElement. */
(function () {
  'use strict';

  const doc = document;
  const root = doc.getElementById('cp-root');
  // The proxy stamps every element it blocks with a random token per response and
  // gives it to this script only: markup injected into the page by anyone else
  // (an XSS dressed as a blocked tracker) is never activated.
  const stamp = (doc.currentScript && doc.currentScript.getAttribute('data-cp-stamp')) || '';
  // Discovery: on this share of page views, report the names (never the values) of the cookies scripts set.
  let sampled = !!doc.currentScript && Math.random() < (+doc.currentScript.getAttribute('data-cp-report') || 0);
  // Loaded twice (a page that includes it again), the listeners would submit every click twice.
  if (!root || window.consentproxy) return;
  // The shadow root, or #cp-root itself in a browser without shadow roots; #cp-ui holds the layers.
  const ui = mount();
  const layer = ui.querySelector('#cp-ui') || root;

  const EVENT = 'consentproxy:change';
  // Attributes the rewriter moves to data-cp-*; srcset goes before src so an
  // <img> selects its candidate once (a style whose url() was neutralised comes back whole).
  const MOVED = ['srcset', 'src', 'href', 'data', 'poster', 'srcdoc', 'imagesrcset', 'xlink:href',
    'data-srcset', 'data-lazy-srcset', 'data-src', 'data-lazy-src', 'data-original', 'data-lazy', 'style'];
  const FOCUSABLE = 'a[href],button:not([disabled]),input:not([disabled]),summary';
  // The script types a browser executes; for any other type it fetches nothing
  // and fires no load event, so waiting for one would stall the queue.
  const JS_TYPE = /^(?:(?:text|application)\/(?:x-)?(?:java|ecma)script|text\/(?:jscript|livescript|javascript1\.[0-5]))$/;
  const TT_KIND = {TrustedScript: 'createScript', TrustedScriptURL: 'createScriptURL'};
  // Anti-flicker snippets we know, by the services whose held script would end them (see unhideKnown).
  const HIDERS = [
    // Google Optimize: class async-hide on <html>, ended by dataLayer.hide.end() from its or GTM's script
    {services: ['Google Optimize', 'Google Tag Manager', 'Google Analytics'], cls: 'async-hide'},
    // Adobe Target's prehiding snippet: <style id="at-body-style">body{opacity:0 !important}</style>
    {services: ['Adobe Target', 'Adobe Experience Platform Launch'], id: 'at-body-style'},
    // VWO's SmartCode: <style id="_vis_opt_path_hides">
    {services: ['VWO'], id: '_vis_opt_path_hides'},
    // Kameleoon's anti-flicker snippet: <style id="kameleoonLoadingStyleSheet">* { visibility: hidden ... }
    {services: ['Kameleoon'], id: 'kameleoonLoadingStyleSheet'}
  ];

  // on our own origin, whatever base URL the page set
  const api = location.origin + (root.getAttribute('data-cp-api') || '/_consent');
  const config = readConfig();
  const listed = withHeld(config.categories || []);  // every service name the settings layer lists
  const texts = config.texts || {};
  let granted = new Set(normalise((root.getAttribute('data-cp-granted') || '').split(/\s+/)));
  let decided = root.getAttribute('data-cp-decided') === '1';
  // The notice version this page shows (recorded with the decision), and the categories asked again
  // because a vendor the visitor was not told of now serves them (their other choices stand).
  const notice = root.getAttribute('data-cp-notice');
  const reask = (root.getAttribute('data-cp-reask') || '').split(/\s+/).filter(function (c) {
    return c && c !== 'necessary';
  });
  let principal = config.principal || null;
  let busy = false;
  let modal = null;
  let opener = null;
  let policy; // Trusted Types policy, created on first need (null when the CSP refuses it)
  let queue = Promise.resolve(); // re-activated scripts run one after another

  window.consentproxy = Object.freeze({
    open: function () { open(focused()); },
    granted: function (category) { return granted.has(category); },
    on: function (handler) {
      const listener = function (e) { handler(e.detail); };
      doc.addEventListener(EVENT, listener);
      return function () { doc.removeEventListener(EVENT, listener); };
    }
  });

  if (doc.readyState === 'loading') doc.addEventListener('DOMContentLoaded', init);
  else init();

  function init() {
    // Out of <body>: a page's opacity, filter or transform on it (an anti-flicker rule, a modal's blur)
    // would apply to the banner too; a child of <html> after <body> also paints above the body's overlays
    // of the same z-index.
    if (root.parentNode !== doc.documentElement) doc.documentElement.appendChild(root);
    unhideKnown();
    fit();
    window.addEventListener('load', fit);
    window.addEventListener('resize', fit);
    if (doc.readyState === 'complete') setTimeout(unhideLate, 0);
    else window.addEventListener('load', function () { setTimeout(unhideLate, 0); });
    // The first layer is non-modal and takes no focus; its live region exists
    // from the start so that screen readers announce a later error.
    const banner = byId('cp-banner');
    if (banner) (banner.querySelector('.cp-panel') || banner).appendChild(liveRegion());
    doc.addEventListener('click', onClick);
    doc.addEventListener('keydown', onKey);
    doc.addEventListener('focusin', onFocusIn);
    // A page restored by Back/Forward shows the decision it was rendered with;
    // the visitor may have decided since, on another page.
    window.addEventListener('pageshow', function (e) { if (e.persisted) refresh(); });
    const nav = performance.getEntriesByType ? performance.getEntriesByType('navigation')[0] : null;
    if (nav && nav.type === 'back_forward') refresh();
    // The browser sends Global Privacy Control: the proxy already treats it as a refusal; record it
    // once as this visitor's decision, so it is provable and the cookie makes it last.
    else if (!decided && root.getAttribute('data-cp-gpc') === '1') submit('gpc_signal', null);
    if (sampled) {
      // Soon after load (the proxy's next response expires cookies the visitor did not allow), or as the view ends.
      if (doc.readyState === 'complete') setTimeout(reportCookies, 2000);
      else window.addEventListener('load', function () { setTimeout(reportCookies, 2000); });
      window.addEventListener('pagehide', reportCookies);
      doc.addEventListener('visibilitychange', function () { if (doc.visibilityState === 'hidden') reportCookies(); });
    }
  }

  // Once per page view: the names of the cookies present, with the page's consent state
  // (the proxy reads it from the consent cookie the beacon carries).
  function reportCookies() {
    if (!sampled) return;
    sampled = false;
    const names = doc.cookie.split(';').map(function (c) { return c.split('=')[0].trim(); }).filter(Boolean);
    if (!names.length) return;
    // A beacon outlives the page (a fetch started in pagehide may be cancelled); its body is text/plain.
    if (navigator.sendBeacon) navigator.sendBeacon(api + '/report', JSON.stringify({cookies: names, decided: decided}));
  }

  function mount() {
    let shadow = root.shadowRoot;
    const template = root.querySelector('template[shadowrootmode]');
    if (shadow || !template) return shadow || root;
    try {
      shadow = root.attachShadow({mode: 'open'});
      shadow.appendChild(template.content);
    } catch (err) {
      shadow = null;
      root.appendChild(template.content);
      root.classList.add('cp-light');
    }
    template.remove();
    return shadow || root;
  }

  function byId(id) {
    return ui.querySelector('#' + id);
  }

  // The element with focus, inside our shadow root too (the document sees its host).
  function focused() {
    let el = doc.activeElement;
    while (el && el.shadowRoot && el.shadowRoot.activeElement) el = el.shadowRoot.activeElement;
    return el;
  }

  // An event's real target, inside our shadow root too.
  function target(e) {
    const path = e.composedPath ? e.composedPath() : [];
    const t = path[0] || e.target;
    return t && t.nodeType === 3 ? t.parentNode : t;
  }

  function readConfig() {
    const el = doc.getElementById('cp-config');
    try {
      return (el && JSON.parse(el.textContent)) || {};
    } catch (err) {
      report(err);
      return {};
    }
  }

  // The services of the elements this page holds that the settings layer does not list yet: a vendor in the
  // page's body is learnt by the proxy as this very page is rewritten, after the banner was written.
  function withHeld(categories) {
    const listed = {};
    categories.forEach(function (cat) { (cat.services || []).forEach(function (s) { listed[s.name] = true; }); });
    const byId = {};
    categories.forEach(function (cat) { byId[cat.id] = cat; });
    doc.querySelectorAll('[data-cp-blocked][data-cp-service]').forEach(function (el) {
      const name = el.getAttribute('data-cp-service');
      const cat = byId[el.getAttribute('data-cp-blocked')];
      if (!cat || !name || listed[name] || name === 'unclassified' || name.indexOf('unknown third party') === 0) return;
      listed[name] = true;
      cat.services = (cat.services || []).concat([{name: name, provider: '', privacy_url: '', cookies: []}]);
    });
    return Object.keys(listed);
  }

  function normalise(list) {
    return Array.from(new Set(['necessary'].concat(list.filter(Boolean))));
  }

  function report(err) {
    if (window.console) console.error('consentproxy:', err);
  }

  // ---- events -------------------------------------------------------------

  function onClick(e) {
    const t = target(e);
    if (!(t instanceof Element)) return;
    let el = t.closest('[data-cp-action]');
    if (el && ui.contains(el)) {
      const action = el.getAttribute('data-cp-action');
      if (action === 'settings') open(el);
      else if (action === 'close') close();
      else submit(action, action === 'save_selection' ? choices() : null);
      return;
    }
    el = t.closest('[data-consent-open]');
    if (el) {
      e.preventDefault(); // site links such as <a href="#" data-consent-open>
      open(el);
      return;
    }
    el = t.closest('[data-cp-load]');
    if (el) loadEmbed(el.getAttribute('data-cp-load'));
  }

  function onKey(e) {
    if (modal) {
      if (e.key === 'Escape') {
        e.preventDefault();
        close();
      } else if (e.key === 'Tab') {
        trap(e);
      }
      return;
    }
    // #cp-root is the last child of <html>, so the first layer would come last in the tab order: while it
    // shows, Tab from nowhere (nothing focused yet, or a click on no control) goes to it first.
    const active = doc.activeElement;
    const banner = byId('cp-banner');
    if (e.key === 'Tab' && !e.shiftKey && banner && (!active || active === doc.body || active === doc.documentElement)) {
      const first = banner.querySelector(FOCUSABLE);
      if (first) {
        e.preventDefault();
        first.focus();
        return;
      }
    }
    // Buttons and links turn Enter/Space into a click; a site's
    // <span role="button" tabindex="0" data-consent-open> does not.
    const t = target(e);
    if ((e.key === 'Enter' || e.key === ' ') && t instanceof Element && t.matches('[data-consent-open][role="button"]')) {
      e.preventDefault();
      open(t);
    }
  }

  function onFocusIn(e) {
    if (modal && !modal.contains(target(e))) modal.firstChild.focus();
  }

  // ---- settings dialog (second layer) --------------------------------------

  function open(from) {
    if (modal) return;
    opener = from;
    modal = buildModal();
    layer.appendChild(modal);
    modal.firstChild.focus();
  }

  function close() {
    if (!modal) return;
    modal.remove();
    modal = null;
    // After a decision the first-layer button that opened the dialog is gone.
    const back = opener && opener.isConnected ? opener : byId('cp-reopen');
    opener = null;
    if (back) back.focus();
  }

  function trap(e) {
    const dialog = modal.firstChild;
    // Controls inside a closed <details> have no boxes and take no focus.
    const items = Array.from(dialog.querySelectorAll(FOCUSABLE)).filter(function (el) {
      return el.getClientRects().length > 0;
    });
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    const active = focused();
    if (e.shiftKey && (active === first || active === dialog)) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && active === last) {
      e.preventDefault();
      first.focus();
    }
  }

  function choices() {
    const out = {};
    modal.querySelectorAll('[data-cp-category]').forEach(function (input) {
      if (!input.disabled) out[input.getAttribute('data-cp-category')] = input.checked;
    });
    return out;
  }

  function h(tag, attrs, kids) {
    const el = doc.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      const value = attrs[name];
      if (value != null && value !== false) el.setAttribute(name, value === true ? '' : value);
    });
    (kids || []).forEach(function (kid) {
      if (kid != null && kid !== false) el.append(kid);
    });
    return el;
  }

  function liveRegion() {
    return h('p', {class: 'cp-error', role: 'status', 'aria-live': 'polite'});
  }

  function actionButton(action, label, cls) {
    return h('button', {type: 'button', class: cls || 'cp-btn', 'data-cp-action': action}, [label]);
  }

  function buildModal() {
    const lang = config.lang || root.getAttribute('lang') || 'en';
    const dialog = h('div', {
      class: 'cp-dialog', role: 'dialog', 'aria-modal': 'true', tabindex: '-1',
      'aria-labelledby': 'cp-s-title', 'aria-describedby': 'cp-s-intro'
    }, [
      h('div', {class: 'cp-dialog-head'}, [
        h('h2', {id: 'cp-s-title', class: 'cp-title'}, [texts.settings_title]),
        // The symbol is hidden from assistive technology, so the accessible name is the word alone.
        h('button', {type: 'button', class: 'cp-close', 'data-cp-action': 'close', 'aria-label': texts.close, title: texts.close}, [
          h('span', {'aria-hidden': 'true'}, ['\u00d7'])
        ])
      ]),
      h('div', {class: 'cp-dialog-body'}, [
        h('p', {id: 'cp-s-intro', class: 'cp-desc'}, [texts.settings_intro])
      ].concat((config.categories || []).map(buildCategory))),
      h('div', {class: 'cp-dialog-foot'}, [
        liveRegion(),
        h('div', {class: 'cp-actions'}, [
          actionButton('save_selection', texts.save),
          actionButton('accept_all', texts.accept_all),
          actionButton('reject_all', texts.reject_all)
        ]),
        principal ? h('p', {class: 'cp-meta'}, [texts.consent_id + ': ', h('code', {class: 'cp-id'}, [principal])]) : null,
        principal || decided ? h('p', {class: 'cp-meta cp-meta-links'}, [
          principal ? h('a', {class: 'cp-link', href: api + '/receipt'}, [texts.receipt]) : null,
          decided ? actionButton('withdraw', texts.withdraw, 'cp-linkbtn') : null
        ]) : null
      ])
    ]);
    return h('div', {class: 'cp-modal'}, [dialog]);
  }

  function buildCategory(cat) {
    const id = 'cp-sw-' + cat.id;
    const descId = 'cp-cd-' + cat.id;
    const required = !!cat.required;
    const services = cat.services || [];
    const input = h('input', {
      type: 'checkbox', role: 'switch', id: id, class: 'cp-switch-input',
      'data-cp-category': cat.id, 'aria-describedby': descId, disabled: required
    });
    // Never pre-ticked: only a previous decision of the visitor turns a switch on.
    input.checked = required || (decided && granted.has(cat.id));
    return h('div', {class: 'cp-cat'}, [
      h('label', {class: required ? 'cp-switch cp-locked' : 'cp-switch', for: id}, [
        h('span', {class: 'cp-cat-label'}, [cat.label]),
        required ? h('span', {class: 'cp-always'}, [texts.always_on]) : null,
        input,
        h('span', {class: 'cp-track', 'aria-hidden': 'true'}, [h('span', {class: 'cp-knob'})])
      ]),
      h('p', {id: descId, class: 'cp-cat-desc'}, [cat.description]),
      services.length ? h('details', {class: 'cp-details'}, [
        h('summary', {class: 'cp-summary'}, [texts.services + ' (' + services.length + ')'])
      ].concat(services.map(buildService))) : null
    ]);
  }

  function buildService(service) {
    const url = httpUrl(service.privacy_url);
    const cookies = service.cookies || [];
    return h('div', {class: 'cp-service'}, [
      h('h3', {class: 'cp-service-name'}, [
        url ? h('a', {class: 'cp-link', href: url, target: '_blank', rel: 'noopener'}, [service.name]) : service.name
      ]),
      service.provider ? h('p', {class: 'cp-service-provider'}, [texts.provider + ': ' + service.provider]) : null,
      cookies.length ? h('table', {class: 'cp-table'}, [
        h('caption', {class: 'cp-caption'}, [texts.cookies]),
        h('thead', null, [h('tr', null, [texts.cookie_name, texts.purpose, texts.lifetime].map(function (label) {
          return h('th', {scope: 'col'}, [label]);
        }))]),
        h('tbody', null, cookies.map(function (cookie) {
          // A purpose in another language than the view's (a database original the site asked for) says which.
          return h('tr', null, [
            h('td', null, [cookie.name || '']),
            h('td', cookie.lang ? {lang: cookie.lang} : null, [cookie.purpose || '']),
            h('td', null, [cookie.lifetime || ''])
          ]);
        }))
      ]) : null
    ]);
  }

  function httpUrl(value) {
    try {
      return value && /^https?:$/.test(new URL(value, location.href).protocol) ? value : null;
    } catch (err) {
      return null;
    }
  }

  // ---- consent API ---------------------------------------------------------

  async function submit(action, choiceMap) {
    if (busy) return;
    if (reask.length && !choiceMap && (action === 'accept_all' || action === 'reject_all')) {
      // Asked again for some categories only: the answer is about those, the rest stands.
      choiceMap = {};
      granted.forEach(function (c) { choiceMap[c] = true; });
      reask.forEach(function (c) { choiceMap[c] = action === 'accept_all'; });
      action = 'save_selection';
    }
    const box = modal || byId('cp-banner');
    const live = box && box.querySelector('.cp-error');
    busy = true;
    layer.classList.add('cp-busy');
    if (live) live.textContent = '';
    // A hung request would leave every button dead; give up and let the visitor retry.
    const abort = window.AbortController ? new AbortController() : null;
    const timer = setTimeout(function () { if (abort) abort.abort(); }, 15000);
    let data = null;
    try {
      const res = await fetch(api, {
        method: 'POST',
        credentials: 'same-origin',
        cache: 'no-store',
        signal: abort ? abort.signal : undefined,
        // One key per click: should the same request reach the server twice (a
        // browser may resend it when a kept-alive connection drops), it is recorded once.
        headers: {'Content-Type': 'application/json', 'Idempotency-Key': uuid()},
        body: decisionBody(action, choiceMap)
      });
      const body = await res.json();
      if (res.ok && body && Array.isArray(body.granted)) data = body;
    } catch (err) {
      report(err);
    }
    clearTimeout(timer);
    busy = false;
    layer.classList.remove('cp-busy');
    if (!data) {
      if (live) live.textContent = texts.error || '';
      return;
    }
    apply(data);
    close();
  }

  // The decision, the notice version shown and what the settings layer listed (left out where it would make
  // the body longer than the API takes: the decision is then recorded under the version rendered).
  function decisionBody(action, choiceMap) {
    const body = choiceMap ? {action: action, choices: choiceMap} : {action: action};
    if (notice) { body.notice = notice; body.lang = config.lang; body.listed = listed; }
    const text = JSON.stringify(body);
    if (new TextEncoder().encode(text).length <= 3800 || !body.listed) return text;
    delete body.listed;
    return JSON.stringify(body);
  }

  function refresh() {
    fetch(api, {credentials: 'same-origin', cache: 'no-store'})
      .then(function (res) { return res.ok ? res.json() : null; })
      .then(function (data) {
        if (!data || !data.principal || !Array.isArray(data.granted)) return;
        const changed = normalise(data.granted).sort().join() !== Array.from(granted).sort().join();
        if (changed || byId('cp-banner')) apply(data);
      })
      .catch(report);
  }

  function uuid() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    const hex = Array.from(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join('');
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join('-');
  }

  function apply(data) {
    const list = normalise(data.granted);
    // A script that already runs cannot be unloaded: after a withdrawal only a
    // fresh page (blocked again by the proxy, cookies expired) stops it.
    const revoked = Array.from(granted).some(function (c) { return list.indexOf(c) < 0; });
    granted = new Set(list);
    principal = data.principal || principal;
    decided = true;
    root.setAttribute('data-cp-granted', list.join(' '));
    root.setAttribute('data-cp-decided', '1');
    const banner = byId('cp-banner');
    if (banner) {
      const hadFocus = banner.contains(focused());
      banner.remove();
      const reopen = byId('cp-reopen');
      if (hadFocus && reopen) reopen.focus();
    }
    // each signal is granted when any category that grants it is (the site's own categories say theirs)
    const signals = config.consent_mode || {
      analytics_storage: ['statistics'], ad_storage: ['marketing'], ad_user_data: ['marketing'],
      ad_personalization: ['marketing'], functionality_storage: ['preferences'],
      personalization_storage: ['preferences']
    };
    const update = {};
    Object.keys(signals).forEach(function (signal) {
      update[signal] = signals[signal].some(function (c) { return granted.has(c); }) ? 'granted' : 'denied';
    });
    gtag('consent', 'update', update);
    doc.dispatchEvent(new CustomEvent(EVENT, {detail: {granted: list}}));
    if (revoked) location.reload();
    else activate();
  }

  // Google's own snippet: the consent command must be pushed as an arguments object.
  function gtag() {
    (window.dataLayer = window.dataLayer || []).push(arguments);
  }

  // ---- anti-flicker --------------------------------------------------------

  // A/B-testing and personalisation snippets hide the page until their vendor's script has applied its
  // variant, and that script unhides it. Held until consent, it unhides nothing: a blank page. Where the
  // vendor's script is held (in the page, marked with its service), its hiding goes at once; the class
  // cp-unhide then overrides any hiding of <html> and <body> for the rest of the page's life, so that a
  // snippet released later hides nothing again (the page is already shown).

  function heldServices() {
    const held = new Set();
    doc.querySelectorAll('[data-cp-blocked][data-cp-service]').forEach(function (el) {
      held.add(el.getAttribute('data-cp-service'));
    });
    return held;
  }

  function unhideKnown() {
    const held = heldServices();
    const html = doc.documentElement;
    HIDERS.forEach(function (hider) {
      if (!hider.services.some(function (name) { return held.has(name); })) return;
      if (hider.cls && html.classList.contains(hider.cls)) {
        html.classList.remove(hider.cls);
        html.classList.add('cp-unhide');
      }
      const el = hider.id ? doc.getElementById(hider.id) : null;
      if (el && (el.localName === 'style' || el.localName === 'link')) {
        el.remove();
        html.classList.add('cp-unhide');
      }
    });
  }

  // After the load event (a page that hides itself only until its own scripts ran is shown by then), and
  // only while something is held: <html> or <body> still hidden by a rule of the page is taken for a
  // snippet whose script we hold.
  function unhideLate() {
    unhideKnown();
    if (!doc.querySelector('[data-cp-blocked]')) return;
    const hidden = [doc.documentElement, doc.body].some(function (el) {
      if (!el) return false;
      const style = getComputedStyle(el);
      return style.visibility === 'hidden' || parseFloat(style.opacity) < 0.1;
    });
    if (hidden) doc.documentElement.classList.add('cp-unhide');
  }

  // ---- re-activation of blocked elements -----------------------------------

  function activate() {
    doc.querySelectorAll('[data-cp-blocked]').forEach(function (el) {
      if (granted.has(el.getAttribute('data-cp-blocked'))) release(el);
    });
  }

  function loadEmbed(id) {
    const frame = byAttr('data-cp-embed-id', id)[0];
    if (!frame) return;
    // One click loads every embed of that service on the page, as its text says.
    const service = frame.getAttribute('data-cp-service');
    const frames = service ? byAttr('data-cp-service', service).filter(function (el) {
      return el.hasAttribute('data-cp-embed-id');
    }) : [frame];
    frames.forEach(function (el) {
      if (el.hasAttribute('data-cp-blocked')) release(el);
    });
    frame.focus(); // the button that had focus went away with its placeholder
  }

  // A placeholder takes the box the page's styles give its iframe (shown for an instant, without a source,
  // to be measured): loading it then moves nothing. The proxy's own sizing (its style attribute) comes first.
  function fit() {
    doc.querySelectorAll('[data-cp-embed]').forEach(function (p) {
      const f = byAttr('data-cp-embed-id', p.getAttribute('data-cp-embed'))[0];
      if (!f || !f.hidden) return;
      if (p.cpBox == null) p.cpBox = p.getAttribute('data-cp-box') || p.getAttribute('style') || '';
      p.style.cssText = p.cpBox;
      f.hidden = false;
      p.hidden = true;
      const s = getComputedStyle(f), r = f.getBoundingClientRect(), d = s.display;
      const box = 'box-sizing:border-box;min-height:0;aspect-ratio:auto;width:' + r.width + 'px;height:' + r.height +
        'px;margin:' + s.margin + ';display:' + (d === 'inline' ? 'inline-block' : d) + ';position:' + s.position +
        ';top:' + s.top + ';left:' + s.left;
      f.hidden = true;
      p.hidden = false;
      const q = p.getBoundingClientRect();
      if (r.width && Math.max(Math.abs(r.x - q.x), Math.abs(r.y - q.y), Math.abs(r.width - q.width),
        Math.abs(r.height - q.height)) > 1) p.style.cssText = box;
    });
  }

  function byAttr(name, value) {
    return Array.from(doc.querySelectorAll('[' + name + ']')).filter(function (el) {
      return el.getAttribute(name) === value;
    });
  }

  function release(el) {
    if (!stamp || el.getAttribute('data-cp-stamp') !== stamp) return;
    el.removeAttribute('data-cp-blocked'); // at once, so that nothing is activated twice
    if (el.localName === 'script') {
      queue = queue.then(function () { return runScript(el); }).catch(report);
      return;
    }
    try {
      MOVED.forEach(function (name) {
        const value = el.getAttribute('data-cp-' + name);
        if (value === null) return;
        el.removeAttribute('data-cp-' + name);
        setAttr(el, name, value);
      });
    } catch (err) {
      report(err);
    }
    const embed = el.getAttribute('data-cp-embed-id');
    if (embed !== null) {
      el.hidden = false;
      byAttr('data-cp-embed', embed).forEach(function (placeholder) { placeholder.remove(); });
    }
  }

  // Resolves when the next script may be inserted: at once, or for an external
  // script that was not async, after it has loaded (or failed), as the parser would.
  function runScript(old) {
    return new Promise(function (done) {
      if (!old.parentNode) return done();
      const s = doc.createElement('script');
      Array.from(old.attributes).forEach(function (a) {
        if (a.name !== 'type' && a.name !== 'nonce' && a.name.indexOf('data-cp-') !== 0) setAttr(s, a.name, a.value);
        else if (a.name.indexOf('data-cp-data-') === 0) setAttr(s, a.name.slice(8), a.value); // a lazy loader's
      });
      // The nonce content attribute reads as empty once the page is parsed; the property keeps it.
      if (old.nonce) s.nonce = old.nonce;
      const type = old.getAttribute('data-cp-type');
      if (type) s.type = type;
      if (!old.hasAttribute('async')) s.async = false;
      const src = old.getAttribute('data-cp-src');
      if (src === null) s.text = typed('createScript', old.text);
      else s.src = typed('createScriptURL', src);
      const wait = src !== null && !s.async && executes(s);
      if (wait) {
        s.addEventListener('load', function () { done(); });
        s.addEventListener('error', function () { done(); });
      }
      const inline = src === null && executes(s);
      const written = inline ? captureWrites() : null;
      const stubs = inline ? unstub() : null;
      const late = inline ? catchLateLoad() : null;
      old.replaceWith(s); // an inline script runs here, at once
      if (late) late();
      if (stubs) restub(stubs);
      if (written) written(s);
      if (!wait) done();
    });
  }

  // A released inline script that calls document.write once the page is parsed would replace the whole
  // document (the classic ga.js and ad snippets do). While it runs, what it writes is collected, then
  // parsed and inserted after it, where the parser would have put it. (Scripts inserted by script from
  // a file cannot wipe the page: the browser ignores their destructive writes.)
  function captureWrites() {
    if (doc.readyState === 'loading') return null;
    const written = [];
    const own = {write: Object.getOwnPropertyDescriptor(doc, 'write'),
                 writeln: Object.getOwnPropertyDescriptor(doc, 'writeln')};
    doc.write = function () { written.push(Array.prototype.join.call(arguments, '')); };
    doc.writeln = function () { written.push(Array.prototype.join.call(arguments, ''), '\n'); };
    return function (s) {
      ['write', 'writeln'].forEach(function (name) {
        if (own[name]) Object.defineProperty(doc, name, own[name]);
        else delete doc[name];
      });
      if (!written.length || !s.parentNode) return;
      try {
        const range = doc.createRange();
        range.selectNode(s);
        s.after(range.createContextualFragment(typed('createHTML', written.join(''))));
      } catch (err) {
        report(err);
      }
    };
  }

  // A released snippet that waits for the page's load (`window.onload = …`, the classic Chartbeat loader, or a
  // 'load' / 'DOMContentLoaded' listener) would wait for ever once the page has loaded: what it hands over
  // then runs right after it. While it runs, the page's own onload handler is set aside, so the snippet's
  // chaining (`oldonload(); load()`) does not run the page's handler a second time.
  function catchLateLoad() {
    if (doc.readyState !== 'complete') return null;
    const late = [];
    const own = window.onload;
    const add = {win: Object.getOwnPropertyDescriptor(window, 'addEventListener'),
                 doc: Object.getOwnPropertyDescriptor(doc, 'addEventListener')};
    const catcher = function (target, kind) {
      return function (type, listener) {
        if (type === kind && listener) late.push([target, listener, kind]);
        else EventTarget.prototype.addEventListener.apply(this, arguments);
      };
    };
    window.onload = null;
    window.addEventListener = catcher(window, 'load');
    doc.addEventListener = catcher(doc, 'DOMContentLoaded');
    return function () {
      [[window, 'win'], [doc, 'doc']].forEach(function (pair) {
        if (add[pair[1]]) Object.defineProperty(pair[0], 'addEventListener', add[pair[1]]);
        else delete pair[0].addEventListener;
      });
      const set = window.onload;
      window.onload = own;
      if (typeof set === 'function') late.push([window, set, 'load']);
      late.forEach(function (call) {
        setTimeout(function () {
          try {
            if (typeof call[1] === 'function') call[1].call(call[0], new Event(call[2]));
            else call[1].handleEvent(new Event(call[2]));
          } catch (err) {
            report(err);
          }
        }, 0);
      });
    };
  }

  // The proxy's stand-ins for held vendors (marked `cp`) queue the page's calls. While a released inline
  // script runs they step aside: Meta's, Amazon's and Google's analytics.js snippets do nothing, or queue
  // first, when their name exists already. What the script defines then receives the queued calls after its
  // own, in the order the page loaded directly would have made them.
  const REPLAY = {
    fbq: function (now, stub) {
      if (window._fbq === stub) window._fbq = now;
      stub.queue.forEach(function (args) { now.apply(window, args); });
    },
    ga: function (now, stub) { (stub.q || []).forEach(function (args) { now.apply(window, args); }); },
    apstag: function (now, stub) {
      stub._Q.forEach(function (call) { (call[0] === 'i' ? now.init : now.fetchBids).apply(now, call[1]); });
    },
    _paq: pushAll, _gaq: pushAll, _comscore: pushAll, _qevents: pushAll
  };

  function pushAll(now, stub) {
    if (stub.length) now.push.apply(now, stub);
  }

  function unstub() {
    const out = [];
    Object.keys(REPLAY).forEach(function (name) {
      const stub = window[name];
      if (!stub || stub.cp !== 1) return;
      try {
        const fresh = Array.isArray(stub) ? [] : undefined;
        if (fresh) window[name] = fresh;
        else delete window[name];
        out.push([name, stub, fresh]);
      } catch (err) { /* declared by the page with var: leave it */ }
    });
    return out;
  }

  function restub(stubs) {
    stubs.forEach(function (saved) {
      const name = saved[0], stub = saved[1], fresh = saved[2];
      const now = window[name];
      if (!now || now === stub || (now === fresh && !fresh.length)) {
        window[name] = stub; // the script did not define it: ours stays, for the next one
        return;
      }
      try {
        REPLAY[name](now, stub);
      } catch (err) {
        report(err);
      }
    });
  }

  function executes(s) {
    const type = s.type.trim().toLowerCase();
    const modules = 'noModule' in s;
    if (modules && s.noModule) return false;
    return !type || (type === 'module' && modules) || JS_TYPE.test(type);
  }

  // Under `require-trusted-types-for 'script'` script URLs, script text and
  // event-handler attributes only take typed values. The values are the page's
  // own markup that the proxy set aside, so the policy passes them unchanged.
  function setAttr(el, name, value) {
    const tt = window.trustedTypes;
    const kind = tt && tt.getAttributeType ? TT_KIND[tt.getAttributeType(el.localName, name)] : null;
    el.setAttribute(name, typed(kind, value));
  }

  function typed(kind, value) {
    const tt = window.trustedTypes;
    if (!tt || !kind) return value;
    if (policy === undefined) {
      try {
        const pass = function (v) { return v; };
        policy = tt.createPolicy('consentproxy', {createHTML: pass, createScript: pass, createScriptURL: pass});
      } catch (err) {
        policy = null; // the CSP's trusted-types list lacks our name; a default policy may still accept
      }
    }
    return policy ? policy[kind](value) : value;
  }
})();
