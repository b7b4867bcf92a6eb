/* Stand-in for Google's gtag.js, served by the consentproxy demo.
 * It does what a consent layer has to deal with: it reads the dataLayer,
 * sets first-party cookies from JavaScript (_ga, _gid, _ga_<container>) and
 * sends a page_view hit per configured measurement ID. It honours Consent
 * Mode: with analytics_storage denied it sets no cookie and sends a
 * cookieless ping. Every hit goes to the demo's tracker stand-in server. */
(function () {
  "use strict";
  var ORIGIN = __ORIGIN__;
  var THIRTEEN_MONTHS = 395 * 86400;
  var dataLayer = window.dataLayer = window.dataLayer || [];
  if (dataLayer.demoStandInLoaded) { return; }
  dataLayer.demoStandInLoaded = true;

  var consent = { analytics_storage: "granted", ad_storage: "granted" };
  /* Like gtag.js, hits go to transport_url when one is set (a first-party collection endpoint). */
  var transportUrl = null;
  var configured = [];
  var sessionStart = Math.floor(Date.now() / 1000);

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

  function randomId() {
    return Math.floor(Math.random() * 2147483647) + "." + Math.floor(Date.now() / 1000);
  }

  function analyticsAllowed() { return consent.analytics_storage === "granted"; }

  /* The client ID is the last two fields of _ga, created when missing. */
  function clientId() {
    if (!analyticsAllowed()) { return randomId(); }
    var parts = (readCookie("_ga") || "").split(".");
    if (parts.length >= 4) { return parts.slice(-2).join("."); }
    var id = randomId();
    writeCookie("_ga", "GA1.1." + id, THIRTEEN_MONTHS);
    return id;
  }

  function touchSessionCookies(measurementId) {
    if (!analyticsAllowed()) { return; }
    if (!readCookie("_gid")) { writeCookie("_gid", "GA1.1." + randomId(), 86400); }
    var now = Math.floor(Date.now() / 1000);
    writeCookie("_ga_" + measurementId.replace(/^G-/, ""),
                "GS1.1." + sessionStart + ".1.1." + now + ".0.0.0", THIRTEEN_MONTHS);
  }

  function consentState() {
    return "G1" + (consent.ad_storage === "granted" ? "1" : "0") + (analyticsAllowed() ? "1" : "0");
  }

  function send(measurementId, eventName, params) {
    touchSessionCookies(measurementId);
    var fields = [
      ["v", "2"], ["tid", measurementId], ["gcs", consentState()], ["cid", clientId()],
      ["sid", String(sessionStart)], ["ul", (navigator.language || "").toLowerCase()],
      ["sr", screen.width + "x" + screen.height], ["dl", location.href], ["dr", document.referrer],
      ["dt", document.title], ["en", eventName]
    ];
    for (var key in params || {}) {
      if (Object.prototype.hasOwnProperty.call(params, key)) { fields.push(["ep." + key, String(params[key])]); }
    }
    var query = fields.map(function (f) { return encodeURIComponent(f[0]) + "=" + encodeURIComponent(f[1]); });
    var url = (transportUrl || ORIGIN) + "/g/collect?" + query.join("&");
    if (navigator.sendBeacon && navigator.sendBeacon(url)) { return; }
    fetch(url, { method: "POST", mode: "no-cors", credentials: "include", keepalive: true });
  }

  function handle(command) {
    if (!command || typeof command.length !== "number") { return; }
    if (command[0] === "set" && command[1] && typeof command[1].transport_url === "string") {
      transportUrl = command[1].transport_url.replace(/\/+$/, "");
    } else if (command[0] === "consent" && command[2]) {
      for (var key in consent) {
        if (command[2][key]) { consent[key] = command[2][key]; }
      }
    } else if (command[0] === "config" && typeof command[1] === "string") {
      if (configured.indexOf(command[1]) < 0) { configured.push(command[1]); }
      send(command[1], "page_view", null);
    } else if (command[0] === "event" && typeof command[1] === "string") {
      for (var i = 0; i < configured.length; i++) { send(configured[i], command[1], command[2]); }
    }
  }

  var push = dataLayer.push;
  dataLayer.push = function () {
    var result = push.apply(dataLayer, arguments);
    for (var i = 0; i < arguments.length; i++) { handle(arguments[i]); }
    return result;
  };
  for (var i = 0; i < dataLayer.length; i++) { handle(dataLayer[i]); }
})();
