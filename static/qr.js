// Scan-to-log-in on the desktop's log-in page: waits for the code shown in
// #qr to be scanned and approved on a phone, with a long poll (GET
// /qr/wait, held up to 25 s by the server, answered at once when the code
// changes). Approved: the answer has set the session cookie, so go home.
// Denied or expired: say so and show a fresh code (POST /qr/new). Network
// trouble: try again after a pause. The page works without this file: its
// link checks the code once.
(function () {
  'use strict';
  var panel = document.getElementById('qr');
  if (!panel || !window.fetch) {
    return;
  }
  var status = document.getElementById('qr-status');
  var image = document.getElementById('qr-image');
  var link = document.getElementById('qr-check');
  var scanner = document.getElementById('qr-scanner');
  var scannerName = document.getElementById('qr-scanner-name');
  var scannerAvatar = document.getElementById('qr-scanner-avatar');
  var csrf = document.querySelector('#login-form input[name=csrf]');
  var key = panel.getAttribute('data-key');
  var seen = 'pending';
  var RETRY_MS = 1000;
  var EXPIRED = 20;
  var USED = 21;
  var NOT_YOURS = 22;

  function say(text) {
    status.textContent = text;
  }

  function showScanner(data) {
    scannerName.textContent = 'Scanned by ' + (data.nickname || 'someone') + '. Confirm on your phone.';
    if (data.avatar_url) {
      scannerAvatar.src = data.avatar_url;
      scannerAvatar.hidden = false;
    }
    scanner.hidden = false;
  }

  function rotate(message) {
    fetch('/qr/new', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-CSRF-Token': csrf ? csrf.value : '' }
    })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (body.code !== 0) {
          say(body.message);
          setTimeout(function () { rotate(message); }, 5 * RETRY_MS);
          return;
        }
        key = body.data.key;
        seen = 'pending';
        panel.setAttribute('data-key', key);
        image.src = body.data.image_url;
        link.href = '/qr/wait?key=' + encodeURIComponent(key);
        scanner.hidden = true;
        scannerAvatar.hidden = true;
        say(message || '');
        poll();
      })
      .catch(function () { setTimeout(function () { rotate(message); }, 2 * RETRY_MS); });
  }

  function poll() {
    var mine = key;
    var url = '/qr/wait?key=' + encodeURIComponent(key) + '&seen=' + seen;
    fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (response) { return response.json(); })
      .then(function (body) {
        if (mine !== key) {
          return;
        }
        if (body.code !== 0) {
          if (body.code === EXPIRED || body.code === USED || body.code === NOT_YOURS) {
            rotate(body.message);
          } else {
            setTimeout(poll, RETRY_MS);
          }
          return;
        }
        var state = body.data.state;
        if (state === 'confirmed') {
          say('Approved. Logging you in…');
          window.location.assign('/home');
        } else if (state === 'denied') {
          rotate('The log-in was denied on the phone.');
        } else if (state === 'expired') {
          rotate('The code expired. Here is a new one.');
        } else {
          if (state === 'scanned') {
            seen = 'scanned';
            showScanner(body.data);
          }
          poll();
        }
      })
      .catch(function () { setTimeout(poll, RETRY_MS); });
  }

  poll();
}());
