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
      return navigator.clipboard.writeText(text).catch(function () {
        return copyBySelection(text);
      });
    }
    return copyBySelection(text);
  }

  function copyBySelection(text) {
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

  // Remembers which element of `root` has the focus (by id, or a copy button by what it
  // copies) and returns a function that gives the focus back to its replacement.
  function focusKeeper(root) {
    var focused = document.activeElement;
    if (!focused || !root.contains(focused)) {
      return function () {};
    }
    if (focused.id) {
      var id = focused.id;
      return function () {
        var again = document.getElementById(id);
        if (again) {
          again.focus();
        }
      };
    }
    var code = focused.previousSibling;
    if (focused.className === 'copy-button' && code && code.getAttribute) {
      var value = code.getAttribute('data-copy');
      return function () {
        var codes = root.querySelectorAll('code[data-copy]');
        for (var i = 0; i < codes.length; i++) {
          if (codes[i].getAttribute('data-copy') === value && codes[i].nextSibling) {
            codes[i].nextSibling.focus();
            return;
          }
        }
      };
    }
    return function () {};
  }

  function follow() {
    var live = document.getElementById('live');
    if (!live || !window.EventSource || !window.fetch || !window.DOMParser) {
      return;
    }
    var busy = false;
    var again = false;
    // The live region as the server sent it, to skip updates that change nothing on this page.
    var shown = live.innerHTML;
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
          live.setAttribute('data-version', fresh.getAttribute('data-version') || '');
          if (fresh.innerHTML === shown) {
            return;
          }
          shown = fresh.innerHTML;
          var restore = focusKeeper(live);
          live.innerHTML = fresh.innerHTML;
          enhanceCopy(live);
          restore();
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
    // First: `follow` keeps the live region as the server sent it, before the buttons.
    follow();
    enhanceCopy(document);
  });
})();
