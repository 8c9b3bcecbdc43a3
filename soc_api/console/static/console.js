// The console's own script, loaded by every page (no third-party code). It only tells the server the browser's time
// zone (a cookie read by web.py's localtime), so that times are shown in the user's zone from the next page on.
(function () {
  "use strict";
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone || !/^[A-Za-z]{1,20}(\/[A-Za-z0-9_+-]{1,30}){0,2}$/.test(zone)) {
    return;
  }
  var current = document.cookie.split("; ").filter(function (c) { return c.indexOf("soc_tz=") === 0; })[0];
  if (current !== "soc_tz=" + zone) {
    var secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = "soc_tz=" + zone + "; Path=/; Max-Age=31536000; SameSite=Strict" + secure;
  }
})();
