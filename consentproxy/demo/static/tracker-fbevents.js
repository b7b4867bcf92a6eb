/* Stand-in for Meta's fbevents.js, served by the consentproxy demo.
 * It takes over the queue that the pixel snippet builds, sets the _fbp
 * cookie from JavaScript and reports events as image requests to /tr, the
 * way the real pixel does. fbq('consent', 'revoke') stops both. */
(function () {
  "use strict";
  var ORIGIN = __ORIGIN__;
  var NINETY_DAYS = 90 * 86400;
  var fbq = window.fbq;
  if (!fbq || fbq.demoStandInLoaded) { return; }
  fbq.demoStandInLoaded = true;

  var pixels = [];
  var revoked = false;

  function readCookie(name) {
    var pairs = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < pairs.length; i++) {
      var eq = pairs[i].indexOf("=");
      if (pairs[i].slice(0, eq) === name) { return pairs[i].slice(eq + 1); }
    }
    return null;
  }

  function browserId() {
    var value = readCookie("_fbp");
    if (!value) {
      value = "fb.1." + Date.now() + "." + Math.floor(Math.random() * 2147483647);
      document.cookie = "_fbp=" + value + "; max-age=" + NINETY_DAYS + "; path=/; SameSite=Lax";
    }
    return value;
  }

  function track(eventName, data) {
    if (revoked) { return; }
    for (var p = 0; p < pixels.length; p++) {
      var fields = [
        ["id", pixels[p]], ["ev", eventName], ["dl", location.href], ["rl", document.referrer],
        ["if", window.top !== window ? "true" : "false"], ["ts", String(Date.now())], ["fbp", browserId()]
      ];
      for (var key in data || {}) {
        if (Object.prototype.hasOwnProperty.call(data, key)) { fields.push(["cd[" + key + "]", String(data[key])]); }
      }
      var query = fields.map(function (f) { return encodeURIComponent(f[0]) + "=" + encodeURIComponent(f[1]); });
      var image = new Image(1, 1);
      image.src = ORIGIN + "/tr?" + query.join("&");
    }
  }

  fbq.callMethod = function () {
    var command = arguments[0];
    if (command === "init") {
      pixels.push(String(arguments[1]));
    } else if (command === "track" || command === "trackCustom") {
      track(String(arguments[1]), arguments[2]);
    } else if (command === "consent") {
      revoked = arguments[1] === "revoke";
    }
  };

  var queued = fbq.queue.splice(0, fbq.queue.length);
  for (var i = 0; i < queued.length; i++) { fbq.callMethod.apply(fbq, queued[i]); }
})();
