/* Stand-in for Hotjar's tracking script, served by the consentproxy demo.
 * It reads the site ID from _hjSettings, sets Hotjar's user and session
 * cookies from JavaScript and reports the page view (and any hj('event', …))
 * to /hotjar/hit, the way a session recorder phones home. */
(function () {
  "use strict";
  var ORIGIN = __ORIGIN__;
  var settings = window._hjSettings || {};
  var siteId = String(settings.hjid || "0");
  var hj = window.hj;
  if (!hj || hj.demoStandInLoaded) { return; }

  function readCookie(name) {
    var pairs = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < pairs.length; i++) {
      var eq = pairs[i].indexOf("=");
      if (pairs[i].slice(0, eq) === name) { return pairs[i].slice(eq + 1); }
    }
    return null;
  }

  function writeCookie(name, value, maxAge) {
    document.cookie = name + "=" + value + "; max-age=" + maxAge + "; path=/; SameSite=Lax";
  }

  var userCookie = "_hjSessionUser_" + siteId;
  var userId = readCookie(userCookie);
  if (!userId) {
    userId = Math.random().toString(36).slice(2) + Date.now().toString(36);
    writeCookie(userCookie, userId, 365 * 86400);
  }
  /* Like Hotjar's: base64 JSON with a session id and its start. */
  var session = { id: Math.random().toString(36).slice(2), c: Date.now(), s: 0, r: 0, sb: 0, sr: 0, se: 0, fs: 1, sp: 0 };
  writeCookie("_hjSession_" + siteId, btoa(JSON.stringify(session)), 30 * 60);

  function send(kind, name) {
    var body = JSON.stringify({
      site: siteId, user: userId, kind: kind, name: name, url: location.href, title: document.title,
      referrer: document.referrer, viewport: window.innerWidth + "x" + window.innerHeight
    });
    var url = ORIGIN + "/hotjar/hit?hjid=" + encodeURIComponent(siteId) + "&sv=" + encodeURIComponent(settings.hjsv || "");
    if (navigator.sendBeacon && navigator.sendBeacon(url, body)) { return; }
    fetch(url, { method: "POST", mode: "no-cors", credentials: "include", keepalive: true, body: body });
  }

  function run(args) {
    if (args && args[0] === "event") { send("event", String(args[1])); }
  }

  var queued = hj.q || [];
  window.hj = function () { run(arguments); };
  window.hj.demoStandInLoaded = true;
  send("pageview", location.pathname);
  for (var i = 0; i < queued.length; i++) { run(queued[i]); }
})();
