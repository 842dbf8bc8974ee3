/* The connector demo page (connector/http/demo.py serves it inline, under a CSP nonce).
 *
 * Register (POST /register), connect to /ws/ and authenticate in the first
 * frame, join and leave conversations, and list the events that arrive.
 * Everything from the user or the server reaches the page through
 * textContent or dataset, never as HTML.
 */
(function () {
  "use strict";

  // Older cards are dropped past this many; the counter still counts every event.
  const MAX_SHOWN_EVENTS = 200;

  const $ = (id) => document.getElementById(id);
  const state = {
    jwt: null,
    claims: null,
    socket: null,
    opened: false,
    closing: false,
    authenticated: false,
    user: null,
    nextRequestId: 1,
    pending: new Map(), // request id -> what was asked, to name it in errors
    joined: [], // normalised names, in joining order
    eventCount: 0,
  };

  // --- status and errors ------------------------------------------------------------

  function renderStatus() {
    let text;
    let mood = "idle";
    if (state.socket && state.authenticated) {
      const count = state.joined.length;
      text = `Connected as ${state.user || "(no user name)"}; joined ${count} conversation${count === 1 ? "" : "s"}.`;
      mood = "ok";
    } else if (state.socket && state.opened) {
      text = "Connected; authenticating…";
      mood = "busy";
    } else if (state.socket) {
      text = `Connecting to ${webSocketUrl()} …`;
      mood = "busy";
    } else if (state.jwt) {
      text = `Registered as ${state.claims && state.claims.gcp_agent_assist_user || "(no user name)"}. Not connected.`;
    } else {
      text = "Not registered: enter the identity provider's token and register.";
    }
    $("status").textContent = text;
    $("status").dataset.mood = mood;
  }

  function showError(text) {
    $("error-text").textContent = text;
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  function updateControls() {
    $("connect").disabled = !state.jwt || Boolean(state.socket);
    $("disconnect").disabled = !state.socket;
    $("join").disabled = !state.authenticated;
    $("leave").disabled = !state.authenticated;
  }

  function refresh() {
    renderStatus();
    updateControls();
  }

  // --- registration ---------------------------------------------------------------------

  async function register(event) {
    event.preventDefault();
    clearError();
    const providerToken = $("provider-token").value;
    const user = $("agent-user").value.trim();
    const headers = { "Content-Type": "application/json" };
    if (providerToken) {
      headers.Authorization = providerToken;
    }
    $("register").disabled = true;
    $("status").textContent = "Registering…";
    try {
      let response;
      try {
        response = await fetch("/register", {
          method: "POST",
          headers,
          body: user ? JSON.stringify({ gcp_agent_assist_user: user }) : "",
          credentials: "omit",
          cache: "no-store",
        });
      } catch (error) {
        throw new Error(`Could not reach /register: ${error.message}`);
      }
      const body = await readJson(response);
      if (!response.ok) {
        throw new Error(`Registration refused (HTTP ${response.status}): ${describeFailure(response, body)}`);
      }
      if (!body || typeof body.token !== "string") {
        throw new Error("/register answered without a token.");
      }
      state.jwt = body.token;
      state.claims = readClaims(body.token);
      showClaims(state.claims);
    } catch (error) {
      showError(error.message);
    } finally {
      $("register").disabled = false;
      refresh();
    }
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (error) {
      return null;
    }
  }

  function describeFailure(response, body) {
    let text = body && typeof body.message === "string" ? body.message : response.statusText || "no message";
    const retryAfter = response.headers.get("Retry-After");
    if (retryAfter) {
      text += ` (retry after ${retryAfter} s)`;
    }
    return text;
  }

  /* The JWT's claims, for display only: the server checks the signature, the page cannot. */
  function readClaims(jwt) {
    try {
      const part = jwt.split(".")[1] || "";
      const base64 = part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "=");
      const bytes = Uint8Array.from(atob(base64), (character) => character.charCodeAt(0));
      const claims = JSON.parse(new TextDecoder().decode(bytes));
      return claims && typeof claims === "object" ? claims : {};
    } catch (error) {
      return {};
    }
  }

  function showClaims(claims) {
    $("jwt-user").textContent = claims.gcp_agent_assist_user || "(none)";
    $("jwt-project").textContent = claims.gcp_agent_assist_project || "(none)";
    let expiry = "(no exp claim)";
    if (typeof claims.exp === "number") {
      const when = new Date(claims.exp * 1000);
      const minutes = Math.round((when.getTime() - Date.now()) / 60000);
      expiry = `${when.toISOString().replace(/\.\d{3}Z$/, "Z")} (${minutes >= 0 ? `in ${minutes} min` : "expired"})`;
    }
    $("jwt-expiry").textContent = expiry;
    $("registration").hidden = false;
  }

  // --- the WebSocket -----------------------------------------------------------------------

  function webSocketUrl() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}/ws/`;
  }

  function connect() {
    if (!state.jwt || state.socket) {
      return;
    }
    clearError();
    let socket;
    try {
      socket = new WebSocket(webSocketUrl());
    } catch (error) {
      showError(`Could not open ${webSocketUrl()}: ${error.message}`);
      return;
    }
    Object.assign(state, { socket, opened: false, closing: false, authenticated: false, user: null });
    socket.addEventListener("open", () => {
      state.opened = true;
      send({ type: "authenticate", token: state.jwt }, "authenticate");
      refresh();
    });
    socket.addEventListener("message", (message) => receive(message.data));
    socket.addEventListener("close", (closed) => onClose(socket, closed));
    refresh();
  }

  function disconnect() {
    if (state.socket) {
      state.closing = true;
      state.socket.close(1000, "closed from the demo page");
    }
  }

  function onClose(socket, closed) {
    if (state.socket !== socket) {
      return;
    }
    const { opened, closing } = state;
    Object.assign(state, { socket: null, opened: false, authenticated: false, user: null });
    state.pending.clear();
    setJoined([]);
    if (closed.code === 4401) {
      showError("The server refused the token (close code 4401). Register again, then connect.");
    } else if (!opened) {
      showError(
        `Could not open ${webSocketUrl()}: the server refused the handshake or cannot be reached. ` +
          `This page's origin (${window.location.origin}) must be in CORS_ALLOWED_ORIGINS (or * in development mode).`
      );
    } else if (!closing) {
      showError(`The connection closed (code ${closed.code}${closed.reason ? `: ${closed.reason}` : ""}).`);
    }
    refresh();
  }

  function send(frame, description) {
    const id = state.nextRequestId++;
    state.pending.set(id, description);
    state.socket.send(JSON.stringify({ ...frame, id }));
  }

  function receive(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch (error) {
      showError("The server sent a frame that is not JSON.");
      return;
    }
    if (!frame || typeof frame !== "object") {
      return;
    }
    let request = null;
    if (frame.id !== undefined && state.pending.has(frame.id)) {
      request = state.pending.get(frame.id);
      state.pending.delete(frame.id);
    }
    switch (frame.type) {
      case "authenticated":
        state.authenticated = true;
        state.user = typeof frame.user === "string" ? frame.user : "";
        clearError();
        break;
      case "joined":
        clearError();
        setJoined(state.joined.filter((name) => name !== frame.conversation).concat([String(frame.conversation)]));
        break;
      case "left":
        clearError();
        setJoined(state.joined.filter((name) => name !== frame.conversation));
        break;
      case "event":
        addEvent(frame.event, frame.payload);
        break;
      case "error":
        showError(`${request ? `${request}: ` : ""}${frame.message} (${frame.code})`);
        break;
      default:
        break; // pong, or a frame type newer than this page
    }
    refresh();
  }

  // --- conversations -----------------------------------------------------------------------

  function join(event) {
    event.preventDefault();
    changeMembership("join", $("conversation").value.trim());
  }

  function changeMembership(kind, conversation) {
    clearError();
    if (!state.authenticated) {
      showError("Connect first.");
      return;
    }
    if (!conversation) {
      showError("Type a conversation name first, like projects/P/locations/global/conversations/C.");
      return;
    }
    send({ type: kind, conversation }, `${kind} ${conversation}`);
  }

  function setJoined(names) {
    state.joined = names;
    const list = $("joined");
    list.replaceChildren();
    if (names.length === 0) {
      const none = element("li", "subtle", "none");
      none.id = "joined-none";
      list.append(none);
    }
    for (const name of names) {
      const item = element("li", "joined-conversation");
      item.dataset.conversation = name;
      const label = element("code", "conversation-name", name);
      const leave = element("button", "link", "leave");
      leave.type = "button";
      leave.addEventListener("click", () => changeMembership("leave", name));
      item.append(label, " ", leave);
      list.append(item);
    }
    document.dispatchEvent(new CustomEvent("aa-demo:joined", { detail: names.slice() }));
  }

  // --- events ---------------------------------------------------------------------------------

  function addEvent(name, payload) {
    state.eventCount += 1;
    $("event-count").textContent = String(state.eventCount);
    $("events-empty").hidden = true;
    const fields = payload && typeof payload === "object" ? payload : { data: payload };

    const item = element("li", "event");
    const head = element("div", "event-head");
    head.append(
      element("span", "event-name", String(name)),
      element("code", "event-conversation", String(fields.conversation_name ?? "(no conversation_name)"))
    );
    const facts = element("dl", "facts");
    const shown = ["message_id", "ack_time", "publish_time"];
    const rest = Object.keys(fields).filter((key) => !["conversation_name", "data", ...shown].includes(key));
    for (const key of [...shown, ...rest]) {
      if (key === "data_type" && fields[key] === name) {
        continue; // always the event name itself
      }
      const value = element("dd", null, fields[key] === undefined ? "(absent)" : String(fields[key]));
      value.dataset.field = key;
      facts.append(element("dt", null, key), value);
    }
    item.append(head, facts, element("pre", "event-data", prettyData(fields.data)));

    const list = $("events");
    list.prepend(item);
    while (list.children.length > MAX_SHOWN_EVENTS) {
      list.lastElementChild.remove();
    }
  }

  /* `data` is the notification as a JSON string, as Google's sample sends it: show it parsed and indented. */
  function prettyData(data) {
    if (typeof data !== "string") {
      return JSON.stringify(data, null, 2) ?? "(no data)";
    }
    try {
      return JSON.stringify(JSON.parse(data), null, 2);
    } catch (error) {
      return `(not JSON) ${data}`;
    }
  }

  function clearEvents() {
    $("events").replaceChildren();
    state.eventCount = 0;
    $("event-count").textContent = "0";
    $("events-empty").hidden = false;
  }

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  // --- wiring ------------------------------------------------------------------------------

  $("ws-url").textContent = webSocketUrl();
  $("register-form").addEventListener("submit", register);
  $("connect").addEventListener("click", connect);
  $("disconnect").addEventListener("click", disconnect);
  $("join-form").addEventListener("submit", join);
  $("leave").addEventListener("click", () => changeMembership("leave", $("conversation").value.trim()));
  $("clear-events").addEventListener("click", clearEvents);
  $("error-dismiss").addEventListener("click", clearError);

  // What the development-only sample push script may use.
  window.aaDemo = Object.freeze({
    showError,
    clearError,
    joined: () => state.joined.slice(),
  });
  refresh();
})();
