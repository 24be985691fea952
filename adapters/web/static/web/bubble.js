/*
 * The chat bubble. Embed with
 *   <script src="https://GATEWAY/web/bubble.js" data-bot="WEB_KEY" async></script>
 * Optional: data-title="Shop assistant" names the chat panel.
 *
 * Everything it loads comes from the gateway's origin (its stylesheet and
 * pusher-js); it builds its DOM without markup strings or style attributes,
 * so it runs under a policy with neither 'unsafe-inline' nor 'unsafe-eval'.
 * Links and images take https: URLs only, whatever the bot stored.
 */
(function () {
  "use strict";

  var script = document.currentScript ||
    document.querySelector('script[data-bot][src*="/web/bubble.js"]');
  if (!script || window.__gatewayChatBubble) {
    return;
  }
  window.__gatewayChatBubble = true;

  var WEB_KEY = script.getAttribute("data-bot") || "";
  var TITLE = script.getAttribute("data-title") || "Chat";
  var GATEWAY = new URL(script.src, document.baseURI).origin;
  var API = GATEWAY + "/api/web/v1/";
  var STORAGE_KEY = "gateway-chat:" + WEB_KEY;
  var OPEN_KEY = "gateway-chat-open:" + WEB_KEY;
  var TYPING_TIMEOUT = 20000;
  var RETRIES = 3;

  var ui = {};
  var chat = {
    session: null,
    pusher: null,
    channel: null,
    starting: null,
    shown: {},
    parts: {},
    typingTimer: null,
    wasDisconnected: false
  };

  // DOM building.

  function el(tag, attributes, children) {
    var node = document.createElement(tag);
    Object.keys(attributes || {}).forEach(function (name) {
      if (name === "text") {
        node.textContent = attributes[name];
      } else {
        node.setAttribute(name, attributes[name]);
      }
    });
    (children || []).forEach(function (child) {
      node.appendChild(child);
    });
    return node;
  }

  function icon(path) {
    var ns = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var shape = document.createElementNS(ns, "path");
    shape.setAttribute("d", path);
    svg.appendChild(shape);
    return svg;
  }

  var CHAT_ICON = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6" +
    "a2 2 0 0 1 2-2zm3 6a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3" +
    " 1.5 1.5 0 0 0 0-3zm5 0a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z";
  var CLOSE_ICON = "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4L12 13.4 6.4 " +
    "19 5 17.6 10.6 12 5 6.4z";
  var SEND_ICON = "M3 20.5 21 12 3 3.5v6.6L15 12 3 13.9z";

  function buildInterface() {
    var stylesheet = el("link", {rel: "stylesheet", href: GATEWAY + "/web/bubble.css"});
    document.head.appendChild(stylesheet);

    ui.launcher = el("button", {
      type: "button", "class": "gwc-launcher", "aria-label": "Open chat: " + TITLE,
      "aria-expanded": "false", "aria-controls": "gwc-panel"
    }, [icon(CHAT_ICON)]);
    ui.close = el("button", {
      type: "button", "class": "gwc-close", "aria-label": "Close chat"
    }, [icon(CLOSE_ICON)]);
    ui.status = el("p", {"class": "gwc-status", role: "status", "aria-live": "polite"});
    ui.log = el("ol", {
      "class": "gwc-log", role: "log", "aria-live": "polite",
      "aria-label": "Messages", tabindex: "0"
    });
    // Screen readers hear the typing from a live region that is always
    // there; the dots are for the eyes only.
    ui.typingStatus = el("p", {
      "class": "gwc-sr gwc-typing-status", role: "status", "aria-live": "polite"
    });
    ui.typing = el("p", {"class": "gwc-typing", "aria-hidden": "true", hidden: ""}, [
      el("span", {"class": "gwc-dot"}),
      el("span", {"class": "gwc-dot"}),
      el("span", {"class": "gwc-dot"})
    ]);
    ui.chips = el("div", {"class": "gwc-chips", role: "group",
                          "aria-label": "Suggested replies"});
    ui.input = el("input", {
      id: "gwc-input", "class": "gwc-input", type: "text", autocomplete: "off",
      maxlength: "2000", placeholder: "Write a message…"
    });
    ui.send = el("button", {type: "submit", "class": "gwc-send",
                            "aria-label": "Send"}, [icon(SEND_ICON)]);
    ui.form = el("form", {"class": "gwc-form"}, [
      el("label", {"for": "gwc-input", "class": "gwc-sr", text: "Message"}),
      ui.input, ui.send
    ]);
    ui.panel = el("section", {
      id: "gwc-panel", "class": "gwc-panel", role: "dialog",
      "aria-label": TITLE, hidden: ""
    }, [
      el("header", {"class": "gwc-header"}, [
        el("h2", {"class": "gwc-title", text: TITLE}), ui.close
      ]),
      ui.status, ui.log, ui.typing, ui.typingStatus, ui.chips, ui.form
    ]);
    ui.root = el("div", {"class": "gwc-root"}, [ui.panel, ui.launcher]);
    document.body.appendChild(ui.root);

    ui.launcher.addEventListener("click", function () {
      setOpen(ui.panel.hidden);
    });
    ui.close.addEventListener("click", function () {
      setOpen(false);
    });
    // Escape closes the open panel from anywhere in the bubble, the
    // launcher included, and the focus goes back to the launcher.
    ui.root.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && !ui.panel.hidden) {
        event.preventDefault();
        setOpen(false);
      }
    });
    ui.form.addEventListener("submit", function (event) {
      event.preventDefault();
      var text = ui.input.value.trim();
      if (text) {
        ui.input.value = "";
        sendVisitorMessage({type: "text", text: text}, text);
      }
    });
  }

  function setOpen(open) {
    ui.panel.hidden = !open;
    ui.root.classList.toggle("gwc-open", open);
    ui.launcher.setAttribute("aria-expanded", String(open));
    ui.launcher.setAttribute("aria-label",
                             (open ? "Close chat: " : "Open chat: ") + TITLE);
    remember(OPEN_KEY, open ? "1" : null);
    if (open) {
      ui.input.focus();
      start();
    } else {
      ui.launcher.focus();
    }
  }

  function setStatus(text) {
    ui.status.textContent = text || "";
  }

  function remember(key, value) {
    try {
      if (value === null) {
        window.localStorage.removeItem(key);
      } else {
        window.localStorage.setItem(key, value);
      }
    } catch (error) {
      // Storage may be disabled; the chat then lasts as long as the page.
    }
  }

  function recall(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (error) {
      return null;
    }
  }

  // Rendering messages.

  function showMessage(message) {
    if (message.parts > 1) {
      message = assemble(message);
      if (!message) {
        return;
      }
    }
    var key = String(message.id);
    if (chat.shown[key]) {
      return;
    }
    var item = renderMessage(message);
    chat.shown[key] = item;
    ui.log.appendChild(item);
    if (message.sender === "bot") {
      setTyping(false);
      showChips(message.quick_replies || []);
    }
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function assemble(part) {
    var key = String(part.id);
    var parts = chat.parts[key] = chat.parts[key] || {};
    parts[part.part] = part;
    if (Object.keys(parts).length < part.parts) {
      return null;
    }
    delete chat.parts[key];
    var whole = Object.assign({}, parts[part.parts], {text: ""});
    for (var number = 1; number <= part.parts; number += 1) {
      whole.text += parts[number].text;
    }
    return whole;
  }

  function renderMessage(message) {
    var from = message.sender === "bot" ? "bot" : "user";
    var said = from === "bot" ? TITLE + " says:" : "You said:";
    var item = el("li", {"class": "gwc-message gwc-from-" + from}, [
      el("span", {"class": "gwc-sr", text: said})
    ]);
    var image = httpsUrl(message.image);
    if (image) {
      item.appendChild(el("img", {"class": "gwc-image", src: image, alt: ""}));
    }
    if (message.text) {
      item.appendChild(el("p", {"class": "gwc-text", text: message.text}));
    }
    var buttons = (message.buttons || []).map(renderButton).filter(Boolean);
    if (buttons.length) {
      item.appendChild(el("div", {"class": "gwc-buttons"}, buttons));
    }
    return item;
  }

  // The URL as the browser resolves it, if it is https; otherwise null.
  function httpsUrl(text) {
    try {
      var url = new URL(String(text || ""));
      return url.protocol === "https:" ? url.href : null;
    } catch (error) {
      return null;
    }
  }

  function renderButton(button) {
    if (button.url) {
      var href = httpsUrl(button.url);
      if (!href) {
        return null;
      }
      return el("a", {
        "class": "gwc-button", href: href, target: "_blank",
        rel: "noopener noreferrer"
      }, [
        document.createTextNode(button.title),
        el("span", {"class": "gwc-sr", text: " (opens in a new tab)"})
      ]);
    }
    var node = el("button",
                  {type: "button", "class": "gwc-button", text: button.title});
    node.addEventListener("click", function () {
      sendVisitorMessage({type: "button", payload: button.payload}, button.title);
    });
    return node;
  }

  function showChips(quickReplies) {
    ui.chips.textContent = "";
    quickReplies.forEach(function (chip) {
      var node = el("button", {type: "button", "class": "gwc-chip", text: chip.title});
      node.addEventListener("click", function () {
        sendVisitorMessage({type: "button", payload: chip.payload}, chip.title);
      });
      ui.chips.appendChild(node);
    });
  }

  function setTyping(on) {
    clearTimeout(chat.typingTimer);
    ui.typing.hidden = !on;
    var said = on ? TITLE + " is typing…" : "";
    if (ui.typingStatus.textContent !== said) {
      ui.typingStatus.textContent = said;
    }
    if (on) {
      chat.typingTimer = setTimeout(function () {
        setTyping(false);
      }, TYPING_TIMEOUT);
    }
  }

  // The API.

  function ApiError(status, retryAfter) {
    this.status = status;
    this.retryAfter = retryAfter;
  }

  function request(method, path, body, token) {
    var headers = {};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
    }
    if (token) {
      headers.Authorization = "Bearer " + token;
    }
    return fetch(API + path, {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      referrerPolicy: "no-referrer",
      cache: "no-store"
    }).then(function (response) {
      if (!response.ok) {
        throw new ApiError(response.status, response.headers.get("Retry-After"));
      }
      return response.json();
    });
  }

  function withRetries(attempt) {
    var tries = 0;
    function run() {
      return attempt().catch(function (error) {
        tries += 1;
        var network = !(error instanceof ApiError) || error.status >= 500;
        if (!network || tries >= RETRIES) {
          throw error;
        }
        return new Promise(function (resolve) {
          setTimeout(resolve, 500 * Math.pow(2, tries));
        }).then(run);
      });
    }
    return run();
  }

  function randomId() {
    var bytes = new Uint8Array(12);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // Sessions.

  function storedSession() {
    try {
      var session = JSON.parse(recall(STORAGE_KEY) || "null");
      if (session && Date.parse(session.expires_at) > Date.now() + 60000) {
        return session;
      }
    } catch (error) {
      // A damaged entry starts a new chat.
    }
    remember(STORAGE_KEY, null);
    return null;
  }

  function newSession() {
    return withRetries(function () {
      return request("POST", "sessions", {bot: WEB_KEY});
    }).then(function (session) {
      remember(STORAGE_KEY, JSON.stringify(session));
      return session;
    });
  }

  function start() {
    if (!chat.starting) {
      setStatus("Connecting…");
      var stored = storedSession();
      chat.starting = (stored ? Promise.resolve(stored) : newSession())
        .then(function (session) {
          chat.session = session;
          return loadPusher();
        })
        .then(connect)
        .catch(function (error) {
          chat.starting = null;
          failed(error);
        });
    }
    return chat.starting;
  }

  function restart() {
    remember(STORAGE_KEY, null);
    if (chat.pusher) {
      chat.pusher.disconnect();
    }
    chat.pusher = chat.channel = chat.session = chat.starting = null;
    chat.shown = {};
    chat.parts = {};
    ui.log.textContent = "";
    showChips([]);
    setTyping(false);
    return start();
  }

  function failed(error) {
    setTyping(false);
    if (error instanceof ApiError && error.status === 401) {
      setStatus("This chat has expired; starting a new one.");
      restart();
    } else if (error instanceof ApiError && error.status === 429) {
      var seconds = parseInt(error.retryAfter, 10);
      setStatus(seconds > 0 ?
                "Too many messages. Please wait " + seconds + " seconds." :
                "Too many messages. Please wait a moment.");
    } else if (error instanceof ApiError && error.status === 403) {
      setStatus("This page may not use this chat.");
    } else {
      setStatus("The chat is unavailable. Please try again later.");
    }
  }

  // Realtime.

  function loadPusher() {
    if (window.Pusher) {
      return Promise.resolve(window.Pusher);
    }
    return new Promise(function (resolve, reject) {
      var tag = el("script", {src: GATEWAY + "/web/pusher.min.js", async: ""});
      tag.addEventListener("load", function () {
        resolve(window.Pusher);
      });
      tag.addEventListener("error", reject);
      document.head.appendChild(tag);
    });
  }

  function connect(Pusher) {
    var options = chat.session.pusher;
    chat.pusher = new Pusher(options.key, {
      cluster: options.cluster,
      wsHost: options.wsHost,
      wsPort: options.wsPort,
      wssPort: options.wssPort,
      forceTLS: options.forceTLS,
      // Websockets only: no HTTP fallbacks to other hosts, nor stats.
      enabledTransports: ["ws", "wss"],
      enableStats: false,
      channelAuthorization: {
        endpoint: API + "pusher/auth",
        transport: "ajax",
        headers: {Authorization: "Bearer " + chat.session.token}
      }
    });
    chat.pusher.connection.bind("state_change", connectionChanged);
    chat.channel = chat.pusher.subscribe(chat.session.channel);
    chat.channel.bind("pusher:subscription_succeeded", synchronise);
    chat.channel.bind("pusher:subscription_error", function (error) {
      failed(new ApiError(error && error.status));
    });
    chat.channel.bind("message", showMessage);
  }

  function connectionChanged(states) {
    if (states.current === "connected") {
      setStatus(chat.wasDisconnected ? "Reconnected." : "");
      chat.wasDisconnected = false;
    } else if (states.current === "connecting" && states.previous === "connected") {
      chat.wasDisconnected = true;
      setStatus("Connection lost; reconnecting…");
    } else if (states.current === "unavailable" || states.current === "failed") {
      chat.wasDisconnected = true;
      setStatus("Connection lost; reconnecting…");
    }
  }

  // Called on every (re)subscription: shows what was missed meanwhile.
  function synchronise() {
    return request("GET", "messages", undefined, chat.session.token)
      .then(function (answer) {
        answer.messages.forEach(showMessage);
        var last = answer.messages[answer.messages.length - 1];
        if (!last) {
          setTyping(true);
          return request("POST", "messages", {type: "greeting", client_id: "greeting"},
                         chat.session.token);
        }
        if (last.sender === "user") {
          // The visitor has answered since the bot offered its choices.
          showChips([]);
          setTyping(true);
        }
      })
      .catch(failed);
  }

  function sendVisitorMessage(body, shownText) {
    var item = renderMessage({sender: "user", text: shownText});
    item.classList.add("gwc-pending");
    ui.log.appendChild(item);
    ui.log.scrollTop = ui.log.scrollHeight;
    showChips([]);
    setTyping(true);
    body.client_id = randomId();
    return start().then(function () {
      if (!chat.session) {
        throw new ApiError(0);
      }
      return withRetries(function () {
        return request("POST", "messages", body, chat.session.token);
      });
    }).then(function (answer) {
      item.classList.remove("gwc-pending");
      chat.shown[String(answer.id)] = item;
    }).catch(function (error) {
      item.classList.add("gwc-failed");
      failed(error);
    });
  }

  function boot() {
    buildInterface();
    if (recall(OPEN_KEY) && storedSession()) {
      ui.panel.hidden = false;
      ui.root.classList.add("gwc-open");
      ui.launcher.setAttribute("aria-expanded", "true");
      start();
    }
  }

  if (document.body) {
    boot();
  } else {
    document.addEventListener("DOMContentLoaded", boot);
  }
})();
