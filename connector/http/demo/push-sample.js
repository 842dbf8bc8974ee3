/* Development mode only (connector/http/demo.py adds it with SERVICE_ROLE=all): push a sample
 * new-message-event for the conversation joined last, shaped like
 * tests/fixtures/pubsub/new-message-event.json, with a fresh messageId each time.
 */
(function () {
  "use strict";

  const button = document.getElementById("push-sample");
  const result = document.getElementById("push-result");
  const demo = window.aaDemo;
  let target = null;

  function setTarget(names) {
    target = names.length ? names[names.length - 1] : null;
    button.disabled = !target;
    button.title = target ? `Push to ${target}` : "Join a conversation first";
  }

  function randomHex(bytes) {
    const values = crypto.getRandomValues(new Uint8Array(bytes));
    return Array.from(values, (value) => value.toString(16).padStart(2, "0")).join("");
  }

  /* Base64 of the UTF-8 bytes (btoa alone accepts Latin-1 only). */
  function base64Utf8(text) {
    let binary = "";
    for (const byte of new TextEncoder().encode(text)) {
      binary += String.fromCharCode(byte);
    }
    return btoa(binary);
  }

  function sampleEnvelope(conversation, messageId) {
    const now = new Date().toISOString();
    const project = conversation.split("/")[1];
    const notification = {
      conversation,
      type: "NEW_MESSAGE",
      newMessagePayload: {
        name: `${conversation}/messages/${messageId}`,
        content: `Sample message from the demo page, ${now}.`,
        languageCode: "en-US",
        participant: `${conversation}/participants/demo-end-user`,
        participantRole: "END_USER",
        createTime: now,
        sendTime: now,
      },
    };
    return {
      message: {
        data: base64Utf8(JSON.stringify(notification)),
        messageId,
        message_id: messageId,
        publishTime: now,
        publish_time: now,
      },
      subscription: `projects/${project}/subscriptions/demo-page`,
    };
  }

  async function pushSample() {
    if (!target) {
      return;
    }
    demo.clearError();
    const messageId = `demo-${Date.now()}-${randomHex(4)}`;
    button.disabled = true;
    result.textContent = `Pushing ${messageId} …`;
    try {
      let response;
      try {
        response = await fetch("/new-message-event", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(sampleEnvelope(target, messageId)),
          credentials: "omit",
          cache: "no-store",
        });
      } catch (error) {
        throw new Error(`Could not reach /new-message-event: ${error.message}`);
      }
      if (response.status !== 204) {
        // 200 {"status": "discarded", "reason"}, 401/403 with push auth on, 404 without the interceptor role, 503.
        let detail = "";
        try {
          const body = await response.json();
          detail = body.reason || body.message || body.error || "";
        } catch (error) {
          detail = response.statusText;
        }
        throw new Error(`The push was not delivered (HTTP ${response.status}${detail ? `: ${detail}` : ""}).`);
      }
      result.textContent = `Pushed messageId ${messageId} (HTTP 204); it should appear under Events.`;
    } catch (error) {
      result.textContent = "";
      demo.showError(error.message);
    } finally {
      button.disabled = !target;
    }
  }

  document.addEventListener("aa-demo:joined", (event) => setTarget(event.detail));
  button.addEventListener("click", pushSample);
  setTarget(demo.joined());
})();
