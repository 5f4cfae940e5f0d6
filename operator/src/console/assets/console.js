// SecureBuild console: enhancements only. Every page works without this script; with it,
// references get copy buttons and pages follow the operator's changes live (server-sent
// events from /events; the page is fetched again and its live region replaced).
(function () {
  'use strict';

  function announce(text) {
    var region = document.getElementById('announce');
    if (region) {
      region.textContent = text;
    }
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement('textarea');
      area.value = text;
      area.setAttribute('readonly', '');
      area.style.position = 'absolute';
      area.style.left = '-10000px';
      document.body.appendChild(area);
      area.select();
      var done = false;
      try {
        done = document.execCommand('copy');
      } catch (e) {
        done = false;
      }
      document.body.removeChild(area);
      if (done) {
        resolve();
      } else {
        reject(new Error('copy refused'));
      }
    });
  }

  function enhanceCopy(root) {
    var items = root.querySelectorAll('code[data-copy]');
    Array.prototype.forEach.call(items, function (code) {
      if (code.getAttribute('data-enhanced')) {
        return;
      }
      code.setAttribute('data-enhanced', 'yes');
      var button = document.createElement('button');
      button.type = 'button';
      button.className = 'copy-button';
      button.textContent = 'Copy';
      button.setAttribute('aria-label', 'Copy ' + (code.getAttribute('data-copy-label') || 'value'));
      button.addEventListener('click', function () {
        var value = code.getAttribute('data-copy');
        copyText(value).then(function () {
          button.textContent = 'Copied';
          button.setAttribute('data-copied', value);
          announce('Copied ' + (code.getAttribute('data-copy-label') || 'value'));
          window.setTimeout(function () { button.textContent = 'Copy'; }, 2000);
        }, function () {
          announce('Copying failed: select the text and copy it');
        });
      });
      code.parentNode.insertBefore(button, code.nextSibling);
    });
  }

  function follow() {
    var live = document.getElementById('live');
    if (!live || !window.EventSource || !window.fetch || !window.DOMParser) {
      return;
    }
    var busy = false;
    var again = false;
    function refresh() {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      fetch(window.location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' } })
        .then(function (response) {
          if (!response.ok) {
            throw new Error('HTTP ' + response.status);
          }
          return response.text();
        })
        .then(function (html) {
          var fresh = new DOMParser().parseFromString(html, 'text/html').getElementById('live');
          if (!fresh) {
            return;
          }
          var focused = document.activeElement;
          var focusId = focused && live.contains(focused) ? focused.id : '';
          live.innerHTML = fresh.innerHTML;
          live.setAttribute('data-version', fresh.getAttribute('data-version') || '');
          enhanceCopy(live);
          if (focusId) {
            var back = document.getElementById(focusId);
            if (back) {
              back.focus();
            }
          }
          announce('Updated ' + new Date().toLocaleTimeString());
        })
        .catch(function () { /* the next event tries again */ })
        .then(function () {
          busy = false;
          if (again) {
            again = false;
            refresh();
          }
        });
    }
    var source = new EventSource('/events');
    source.addEventListener('update', function (event) {
      if (event.data !== live.getAttribute('data-version')) {
        refresh();
      }
    });
    document.documentElement.setAttribute('data-live', 'connected');
  }

  document.addEventListener('DOMContentLoaded', function () {
    enhanceCopy(document);
    follow();
  });
})();
