// Unit tests of etp.js: the codec, and the client against a fake WebSocket.
// Run: node --test etp.test.mjs
import { describe, it, mock, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";

import etp, {
  ACK_PREFIX,
  EtpClient,
  EtpClosedError,
  EtpConnectionError,
  EtpError,
  EtpFrameError,
  EtpHandlerError,
  EtpTimeoutError,
  MAX_TIMEOUT_MS,
  backoffDelay,
  decodeFrame,
  encodeFrame,
  parseAckId,
  validateEventName,
} from "./etp.js";

const utf8 = (text) => new TextEncoder().encode(text);
const text = (bytes) => new TextDecoder().decode(bytes);
const flush = () => new Promise((resolve) => setImmediate(resolve));

// ---------------------------------------------------------------------------------------
// Codec

describe("decodeFrame (text messages)", () => {
  it("splits name, ack id and data", () => {
    assert.deepEqual(decodeFrame("hello||5||world"), { name: "hello", ackId: 5n, data: "world" });
  });

  it("keeps a 2-part frame (no data) apart from an empty tail (empty data)", () => {
    assert.deepEqual(decodeFrame("ev||0"), { name: "ev", ackId: 0n, data: undefined });
    assert.deepEqual(decodeFrame("ev||0||"), { name: "ev", ackId: 0n, data: "" });
  });

  it("takes the whole rest as data, || included", () => {
    assert.deepEqual(decodeFrame("ev||1||a||b||"), { name: "ev", ackId: 1n, data: "a||b||" });
    assert.deepEqual(decodeFrame("ev||1||||"), { name: "ev", ackId: 1n, data: "||" });
  });

  it("allows an empty name and single pipes in names", () => {
    assert.deepEqual(decodeFrame("||0||x"), { name: "", ackId: 0n, data: "x" });
    assert.deepEqual(decodeFrame("a|b||2"), { name: "a|b", ackId: 2n, data: undefined });
  });

  it("splits a|||b at the leftmost || (the ack id |b is then invalid)", () => {
    assert.throws(() => decodeFrame("a|||b"), {
      name: "EtpFrameError",
      message: 'parse ackId: strconv.Atoi: parsing "|b": invalid syntax',
    });
  });

  it("keeps multi-byte UTF-8 in names and data", () => {
    assert.deepEqual(decodeFrame("привет||3||世界 🎉"), { name: "привет", ackId: 3n, data: "世界 🎉" });
  });

  it("rejects a message without || with Go's wording", () => {
    for (const message of ["hello", "", "a|b|c"]) {
      assert.throws(() => decodeFrame(message), (error) => {
        assert.ok(error instanceof EtpFrameError);
        assert.ok(error instanceof EtpError);
        assert.equal(error.message, `expected format: <eventName>||<ackId>||<eventData>, got: ${message}`);
        return true;
      });
    }
  });

  it("quotes at most 120 characters of a malformed message", () => {
    const long = "x".repeat(121);
    assert.throws(() => decodeFrame(long), {
      message: `expected format: <eventName>||<ackId>||<eventData>, got: ${"x".repeat(120)}... (121 chars)`,
    });
    const exact = "x".repeat(120);
    assert.throws(() => decodeFrame(exact), { message: `expected format: <eventName>||<ackId>||<eventData>, got: ${exact}` });
  });

  it("rejects a non-integer ack id in each position", () => {
    assert.throws(() => decodeFrame("ev||"), { message: 'parse ackId: strconv.Atoi: parsing "": invalid syntax' });
    assert.throws(() => decodeFrame("ev||x||data"), { message: 'parse ackId: strconv.Atoi: parsing "x": invalid syntax' });
  });
});

describe("parseAckId (Go strconv.Atoi on 64 bits)", () => {
  it("accepts signs and leading zeros", () => {
    assert.equal(parseAckId("0"), 0n);
    assert.equal(parseAckId("+9"), 9n);
    assert.equal(parseAckId("009"), 9n);
    assert.equal(parseAckId("-1"), -1n);
    assert.equal(parseAckId("-0"), 0n);
  });

  it("keeps ids beyond 2^53 exact, up to the i64 limits", () => {
    assert.equal(parseAckId("9007199254740993"), 9007199254740993n);
    assert.equal(parseAckId("9223372036854775807"), 2n ** 63n - 1n);
    assert.equal(parseAckId("-9223372036854775808"), -(2n ** 63n));
  });

  it("refuses one past the i64 limits as out of range", () => {
    for (const id of ["9223372036854775808", "-9223372036854775809", "99999999999999999999"]) {
      assert.throws(() => parseAckId(id), {
        name: "EtpFrameError",
        message: `parse ackId: strconv.Atoi: parsing ${JSON.stringify(id)}: value out of range`,
      });
    }
  });

  it("refuses everything Atoi refuses", () => {
    for (const id of ["", "+", "-", " 1", "1 ", "1_0", "0x10", "1e3", "1.0", "١", "+-1", "\u0000"]) {
      assert.throws(() => parseAckId(id), { name: "EtpFrameError", message: /invalid syntax$/ }, `ack id ${JSON.stringify(id)}`);
    }
  });
});

describe("decodeFrame (binary messages)", () => {
  it("splits bytes and gives the data as a Uint8Array", () => {
    const frame = new Uint8Array([...utf8("bin||7||"), 0, 0xff, 0x7c, 0x7c, 0xfe]);
    const decoded = decodeFrame(frame.buffer);
    assert.equal(decoded.name, "bin");
    assert.equal(decoded.ackId, 7n);
    assert.ok(decoded.data instanceof Uint8Array);
    assert.deepEqual([...decoded.data], [0, 0xff, 0x7c, 0x7c, 0xfe]);
  });

  it("reads typed-array views at their offset", () => {
    const backing = new Uint8Array([...utf8("junk"), ...utf8("ev||1||ok")]);
    const decoded = decodeFrame(backing.subarray(4));
    assert.equal(decoded.name, "ev");
    assert.equal(text(decoded.data), "ok");
  });

  it("keeps 2-part and empty-tail binary frames apart", () => {
    assert.equal(decodeFrame(utf8("ev||0").buffer).data, undefined);
    assert.deepEqual([...decodeFrame(utf8("ev||0||").buffer).data], []);
  });

  it("decodes a UTF-8 name, lossily when it is invalid", () => {
    assert.equal(decodeFrame(utf8("名前||0||x")).name, "名前");
    assert.equal(decodeFrame(new Uint8Array([0xff, 0x7c, 0x7c, 0x30])).name, "\ufffd");
  });

  it("rejects malformed binary frames", () => {
    assert.throws(() => decodeFrame(new Uint8Array([0x61, 0x7c, 0x62])), { name: "EtpFrameError", message: /^expected format/ });
    assert.throws(() => decodeFrame(new ArrayBuffer(0)), { name: "EtpFrameError", message: /got: $/ });
    assert.throws(() => decodeFrame(utf8("ev||99999999999999999999")), { message: /value out of range$/ });
    assert.throws(() => decodeFrame({}), { name: "EtpFrameError", message: "unsupported message type Object" });
  });
});

describe("encodeFrame", () => {
  it("writes text frames, with and without data", () => {
    assert.equal(encodeFrame("ev", 0, "data"), "ev||0||data");
    assert.equal(encodeFrame("ev", 3, undefined), "ev||3");
    assert.equal(encodeFrame("ev", 3, null), "ev||3");
    assert.equal(encodeFrame("ev", 3, ""), "ev||3||");
    assert.equal(encodeFrame("ev", "9223372036854775807", "x"), "ev||9223372036854775807||x");
    assert.equal(encodeFrame("ev", -1n, "a||b"), "ev||-1||a||b");
  });

  it("writes bytes as a binary frame, only the view's bytes", () => {
    const backing = new Uint8Array([9, 9, 0, 0xff, 9]);
    const frame = encodeFrame("名", 2, backing.subarray(2, 4));
    assert.ok(frame instanceof Uint8Array);
    assert.deepEqual([...frame], [...utf8("名||2||"), 0, 0xff]);
    assert.deepEqual([...encodeFrame("a", 0, new Uint8Array([1, 2]).buffer)], [...utf8("a||0||"), 1, 2]);
    assert.deepEqual([...encodeFrame("a", 0, new DataView(new Uint8Array([7]).buffer))], [...utf8("a||0||"), 7]);
    assert.deepEqual([...encodeFrame("a", 0, new Uint16Array([0x0102]))].slice(6).sort(), [1, 2]);
    assert.deepEqual([...encodeFrame("a", 0, new Uint8Array(0))], [...utf8("a||0||")]);
  });

  it("round-trips through decodeFrame", () => {
    const bytes = new Uint8Array(256).map((_, i) => i);
    const decoded = decodeFrame(encodeFrame("b", 12, bytes));
    assert.deepEqual([...decoded.data], [...bytes]);
    assert.deepEqual(decodeFrame(encodeFrame("t", 1, "x||y")), { name: "t", ackId: 1n, data: "x||y" });
  });

  it("refuses data that is neither text nor bytes", () => {
    for (const data of [42, { a: 1 }, [1, 2], true, new Blob(["x"])]) {
      assert.throws(() => encodeFrame("ev", 0, data), { name: "TypeError", message: /JSON\.stringify/ });
    }
  });
});

describe("validateEventName", () => {
  it("accepts ordinary names, the empty name and single pipes", () => {
    for (const name of ["ev", "", "a|b", "|a", "日本", "__ack", "_ack_x"]) validateEventName(name);
  });

  it("refuses names the peer would misread", () => {
    assert.throws(() => validateEventName("a||b"), { name: "TypeError", message: /separator/ });
    assert.throws(() => validateEventName("a|"), { name: "TypeError", message: /ends with "\|"/ });
    assert.throws(() => validateEventName(`${ACK_PREFIX}x`), { name: "TypeError", message: /reserved prefix/ });
    assert.throws(() => validateEventName(ACK_PREFIX), { name: "TypeError", message: /reserved prefix/ });
    assert.throws(() => validateEventName(1), { name: "TypeError", message: /must be a string \(got number\)/ });
  });
});

describe("backoffDelay", () => {
  const options = { initialDelay: 100, maxDelay: 1000, factor: 2, jitter: 0.5, maxAttempts: Infinity };

  it("grows by the factor up to the maximum", () => {
    assert.deepEqual([0, 1, 2, 3, 4, 10].map((n) => backoffDelay(n, options, 0)), [100, 200, 400, 800, 1000, 1000]);
  });

  it("takes at most the jitter share off", () => {
    assert.equal(backoffDelay(0, options, 0.999999), 50);
    assert.equal(backoffDelay(4, options, 0.5), 750);
    assert.equal(backoffDelay(4, { ...options, jitter: 0 }, 0.9), 1000);
  });
});

// ---------------------------------------------------------------------------------------
// Client

/** A WebSocket double: records what the client sends, and lets the test play the server. */
function fakeWebSocketClass() {
  return class FakeWebSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    static instances = [];

    constructor(url) {
      this.url = url;
      this.readyState = FakeWebSocket.CONNECTING;
      this.sent = [];
      this.closedWith = null;
      FakeWebSocket.instances.push(this);
    }

    send(frame) {
      if (this.readyState !== FakeWebSocket.OPEN) throw new Error("InvalidStateError: not open");
      this.sent.push(frame);
    }

    close(code, reason) {
      this.closedWith = { code, reason };
      this.readyState = FakeWebSocket.CLOSING;
    }

    // The server side.
    open() {
      this.readyState = FakeWebSocket.OPEN;
      this.onopen?.({});
    }

    receive(data) {
      this.onmessage?.({ data });
    }

    drop(code = 1006, reason = "", wasClean = false) {
      this.readyState = FakeWebSocket.CLOSED;
      this.onerror?.({});
      this.onclose?.({ code, reason, wasClean });
    }
  };
}

describe("EtpClient", () => {
  let WS;
  let errors;
  let disconnects;

  /** A started client whose first socket is open. */
  function connected(options = {}) {
    const client = etp("ws://127.0.0.1:1/ws", { WebSocket: WS, ...options });
    client.onError((error) => errors.push(error));
    client.onDisconnect((info) => disconnects.push(info));
    client.connect();
    WS.instances.at(-1).open();
    return { client, ws: WS.instances.at(-1) };
  }

  beforeEach(() => {
    WS = fakeWebSocketClass();
    errors = [];
    disconnects = [];
    mock.timers.enable({ apis: ["setTimeout"] });
  });

  afterEach(() => {
    mock.timers.reset();
    mock.restoreAll();
  });

  describe("construction", () => {
    it("resolves http(s) URLs to ws(s), appends params, asks for ArrayBuffers", () => {
      const client = new EtpClient("http://127.0.0.1:9/ws?a=1", { WebSocket: WS, params: { token: "t k" } });
      assert.equal(client.url, "ws://127.0.0.1:9/ws?a=1&token=t+k");
      assert.equal(new EtpClient("https://h/x", { WebSocket: WS }).url, "wss://h/x");
      client.connect();
      assert.equal(WS.instances.length, 1);
      assert.equal(WS.instances[0].url, client.url);
      assert.equal(WS.instances[0].binaryType, "arraybuffer");
      client.connect(); // already started: no second socket
      assert.equal(WS.instances.length, 1);
    });

    it("refuses bad URLs and options with clear errors", () => {
      assert.throws(() => etp("ftp://h/", { WebSocket: WS }), { name: "TypeError", message: /ws:, wss:, http: or https:/ });
      assert.throws(() => etp("ws://h/", {}), globalThis.WebSocket ? undefined : { message: /options\.WebSocket/ });
      assert.throws(() => etp("ws://h/", { WebSocket: WS, ackTimeout: 0 }), { name: "RangeError" });
      assert.throws(() => etp("ws://h/", { WebSocket: WS, reconnect: { jitter: 1.5 } }), { name: "RangeError", message: /jitter/ });
      assert.throws(() => etp("ws://h/", { WebSocket: WS, reconnect: { factor: 0.5 } }), { name: "RangeError", message: /factor/ });
      etp("ws://h/", { WebSocket: WS, reconnect: { jitter: 1, maxDelay: MAX_TIMEOUT_MS } });
      assert.throws(() => etp("ws://h/", { WebSocket: WS, reconnect: { maxDelay: MAX_TIMEOUT_MS + 1 } }), { name: "RangeError", message: /maxDelay/ });
    });

    it("refuses handlers under names that cannot travel", () => {
      const client = etp("ws://h/", { WebSocket: WS });
      assert.throws(() => client.on("__ack_x", () => {}), { name: "TypeError" });
      assert.throws(() => client.on("a||b", () => {}), { name: "TypeError" });
      assert.throws(() => client.on("ok", "not a function"), { name: "TypeError", message: /needs a function/ });
    });
  });

  describe("emit", () => {
    it("fails with EtpClosedError before the socket opens", () => {
      const client = etp("ws://h/", { WebSocket: WS }).connect();
      assert.throws(() => client.emit("ev", "x"), { name: "EtpClosedError", message: 'cannot emit "ev": not connected' });
      assert.equal(client.connected, false);
    });

    it("sends strings as text and bytes as binary", () => {
      const { client, ws } = connected();
      assert.equal(client.connected, true);
      client.emit("say", "héllo || there");
      client.emit("nothing");
      client.emit("empty", "");
      client.emit("bytes", new Uint8Array([0, 255]));
      assert.deepEqual(ws.sent.slice(0, 3), ["say||0||héllo || there", "nothing||0", "empty||0||"]);
      assert.deepEqual([...ws.sent[3]], [...utf8("bytes||0||"), 0, 255]);
    });

    it("refuses bad names and data without sending", () => {
      const { client, ws } = connected();
      assert.throws(() => client.emit("__ack_x", "d"), { name: "TypeError" });
      assert.throws(() => client.emit("ev", { a: 1 }), { name: "TypeError" });
      assert.deepEqual(ws.sent, []);
    });
  });

  describe("emitWithAck", () => {
    it("numbers requests from 1 and resolves with the answer's data", async () => {
      const { client, ws } = connected();
      const first = client.emitWithAck("join", "lobby");
      const second = client.emitWithAck("nick", new Uint8Array([1]));
      assert.equal(ws.sent[0], "join||1||lobby");
      assert.deepEqual([...ws.sent[1]], [...utf8("nick||2||"), 1]);
      assert.equal(client.pendingAcks, 2);
      ws.receive("__ack_nick||2||ok 2");
      ws.receive("__ack_join||1||ok 1");
      assert.equal(await first, "ok 1");
      assert.equal(await second, "ok 2");
      assert.equal(client.pendingAcks, 0);
    });

    it("gives undefined for a 2-part answer, '' for an empty tail, bytes for a binary answer", async () => {
      const { client, ws } = connected();
      const a = client.emitWithAck("a");
      const b = client.emitWithAck("b");
      const c = client.emitWithAck("c");
      ws.receive("__ack_a||1");
      ws.receive("__ack_b||2||");
      ws.receive(new Uint8Array([...utf8("__ack_c||3||"), 0, 0xff]).buffer);
      assert.equal(await a, undefined);
      assert.equal(await b, "");
      assert.deepEqual([...(await c)], [0, 0xff]);
    });

    it("matches answers by id only, in any spelling of the id", async () => {
      const { client, ws } = connected();
      const a = client.emitWithAck("a");
      const b = client.emitWithAck("b");
      ws.receive("__ack_other||+1||one");
      ws.receive("__ack_||002||two");
      assert.equal(await a, "one");
      assert.equal(await b, "two");
    });

    it("drops unknown, late and duplicate answers silently", async () => {
      const { client, ws } = connected();
      const a = client.emitWithAck("a");
      ws.receive("__ack_a||1||first");
      ws.receive("__ack_a||1||duplicate");
      ws.receive("__ack_a||0||zero");
      ws.receive("__ack_a||9223372036854775807||unknown");
      assert.equal(await a, "first");
      assert.deepEqual(errors, []);
    });

    it("reports a malformed answer to onError", () => {
      const { client, ws } = connected();
      client.emitWithAck("a").catch(() => {});
      ws.receive("__ack_a||1x||oops");
      assert.equal(errors.length, 1);
      assert.ok(errors[0] instanceof EtpFrameError);
      assert.equal(client.pendingAcks, 1);
    });

    it("times out with EtpTimeoutError, by default and per call", async () => {
      const { client, ws } = connected({ ackTimeout: 1000 });
      const byDefault = client.emitWithAck("slow", "x");
      const perCall = client.emitWithAck("slower", "x", 5000);
      mock.timers.tick(999);
      assert.equal(client.pendingAcks, 2);
      mock.timers.tick(1);
      await assert.rejects(byDefault, (error) => {
        assert.ok(error instanceof EtpTimeoutError && error instanceof EtpError);
        assert.equal(error.message, 'no acknowledgement for event "slow" within 1000 ms');
        assert.equal(error.event, "slow");
        assert.equal(error.timeoutMs, 1000);
        return true;
      });
      mock.timers.tick(4000);
      await assert.rejects(perCall, { name: "EtpTimeoutError", timeoutMs: 5000 });
      ws.receive("__ack_slow||1||late");
      assert.equal(client.pendingAcks, 0);
      assert.deepEqual(errors, []);
    });

    it("accepts a timeout of exactly 2^31 - 1 ms and refuses one more", async () => {
      const { client } = connected();
      const longest = client.emitWithAck("a", undefined, MAX_TIMEOUT_MS);
      await assert.rejects(client.emitWithAck("a", undefined, MAX_TIMEOUT_MS + 1), { name: "RangeError", message: /at most 2147483647/ });
      for (const bad of [0, -1, NaN, Infinity, "5"]) {
        await assert.rejects(client.emitWithAck("a", undefined, bad), { name: "RangeError" });
      }
      client.close();
      await assert.rejects(longest, { name: "EtpClosedError" });
    });

    it("rejects (never throws) on bad arguments and when not connected", async () => {
      const client = etp("ws://h/", { WebSocket: WS });
      await assert.rejects(client.emitWithAck("ev"), { name: "EtpClosedError" });
      const { client: open } = connected();
      await assert.rejects(open.emitWithAck("__ack_ev"), { name: "TypeError" });
      await assert.rejects(open.emitWithAck("ev", 12), { name: "TypeError" });
      assert.equal(open.pendingAcks, 0);
    });

    it("fails pending acks at once when the connection drops", async () => {
      const { client, ws } = connected();
      const pending = [client.emitWithAck("a"), client.emitWithAck("b")];
      ws.drop(1006);
      for (const p of pending) {
        await assert.rejects(p, (error) => {
          assert.ok(error instanceof EtpClosedError);
          assert.match(error.message, /: the connection closed \(code 1006\)$/);
          return true;
        });
      }
      assert.equal(client.pendingAcks, 0);
    });

    it("fails pending acks when close() is called, and sends a close frame", async () => {
      const { client, ws } = connected();
      const pending = client.emitWithAck("a");
      client.close(4001, "bye");
      await assert.rejects(pending, { name: "EtpClosedError", message: 'no acknowledgement for event "a": the client was closed' });
      assert.deepEqual(ws.closedWith, { code: 4001, reason: "bye" });
      assert.deepEqual(disconnects, [{ code: 4001, reason: "bye", wasClean: true, reconnectIn: null }]);
    });

    it("restarts ids at 1 on each connection", () => {
      const { client, ws } = connected({ reconnect: { initialDelay: 10, jitter: 0 } });
      client.emitWithAck("a").catch(() => {});
      client.emitWithAck("a").catch(() => {});
      ws.drop();
      mock.timers.tick(10);
      const next = WS.instances.at(-1);
      next.open();
      client.emitWithAck("a").catch(() => {});
      assert.deepEqual(ws.sent, ["a||1", "a||2"]);
      assert.deepEqual(next.sent, ["a||1"]);
    });
  });

  describe("answering the server's ack requests", () => {
    it("answers with the handler's return value, sync or async", async () => {
      const { client, ws } = connected();
      client.on("who", (data, info) => {
        assert.deepEqual(info, { name: "who", binary: false, ackId: "7" });
        return `alice (asked: ${data})`;
      });
      client.on("later", async () => "done");
      ws.receive("who||7||nick?");
      ws.receive("later||8");
      await flush();
      assert.deepEqual(ws.sent, ["__ack_who||7||alice (asked: nick?)", "__ack_later||8||done"]);
    });

    it("writes the id back as the canonical decimal, exact beyond 2^53", async () => {
      const { client, ws } = connected();
      client.on("q", () => "a");
      for (const id of ["9223372036854775807", "-9223372036854775808", "-1", "+9", "009", "9007199254740993"]) {
        ws.receive(`q||${id}||`);
      }
      await flush();
      assert.deepEqual(ws.sent, [
        "__ack_q||9223372036854775807||a",
        "__ack_q||-9223372036854775808||a",
        "__ack_q||-1||a",
        "__ack_q||9||a",
        "__ack_q||9||a",
        "__ack_q||9007199254740993||a",
      ]);
    });

    it("answers without data when there is no handler or the answer is empty", async () => {
      const { client, ws } = connected();
      client.on("nothing", () => {});
      client.on("blank", () => "");
      client.on("nobytes", () => new Uint8Array(0));
      ws.receive("unhandled||1||x");
      ws.receive("nothing||2");
      ws.receive("blank||3");
      ws.receive("nobytes||4");
      await flush();
      assert.deepEqual(ws.sent, ["__ack_unhandled||1", "__ack_nothing||2", "__ack_blank||3", "__ack_nobytes||4"]);
    });

    it("answers bytes with a binary message, and passes binary data as bytes", async () => {
      const { client, ws } = connected();
      client.on("echo", (data, info) => {
        assert.equal(info.binary, true);
        assert.ok(data instanceof Uint8Array);
        return data;
      });
      ws.receive(new Uint8Array([...utf8("echo||5||"), 0xff, 0, 0x7c]).buffer);
      await flush();
      assert.deepEqual([...ws.sent[0]], [...utf8("__ack_echo||5||"), 0xff, 0, 0x7c]);
    });

    it("does not answer frames with ack id 0", async () => {
      const { client, ws } = connected();
      const seen = [];
      client.on("ev", (data, info) => {
        seen.push([data, info.ackId]);
        return "ignored";
      });
      ws.receive("ev||0||a");
      ws.receive("ev||-0");
      ws.receive("ev||000||");
      await flush();
      assert.deepEqual(seen, [["a", null], [undefined, null], ["", null]]);
      assert.deepEqual(ws.sent, []);
    });

    it("reports a failing handler and still answers, without data", async () => {
      const { client, ws } = connected();
      client.on("boom", () => {
        throw new Error("kaput");
      });
      client.on("reject", async () => Promise.reject(new Error("no")));
      client.on("object", () => ({ not: "sendable" }));
      ws.receive("boom||1||x");
      ws.receive("reject||2");
      ws.receive("object||3");
      await flush();
      // Handlers run concurrently: answers go out as each one ends.
      assert.deepEqual(ws.sent.sort(), ["__ack_boom||1", "__ack_object||3", "__ack_reject||2"]);
      assert.equal(errors.length, 3);
      assert.ok(errors.every((e) => e instanceof EtpHandlerError));
      const byEvent = Object.fromEntries(errors.map((e) => [e.event, e]));
      assert.equal(byEvent.boom.message, 'handler of "boom" failed: Error: kaput');
      assert.equal(byEvent.boom.cause.message, "kaput");
      assert.equal(byEvent.reject.message, 'handler of "reject" failed: Error: no');
      assert.equal(byEvent.object.message, 'handler of "object" returned Object; an answer must be a string or bytes');
    });

    it("gives unknown events to onUnknownEvent, and never gives it answers", async () => {
      const { client, ws } = connected();
      const seen = [];
      client.onUnknownEvent((name, data) => {
        seen.push(name);
        return `fallback ${data}`;
      });
      ws.receive("__ack_x||1||stray");
      ws.receive("misc||4||d");
      await flush();
      assert.deepEqual(seen, ["misc"]);
      assert.deepEqual(ws.sent, ["__ack_misc||4||fallback d"]);
    });

    it("drops an answer whose connection has ended", async () => {
      const { client, ws } = connected({ reconnect: { initialDelay: 10, jitter: 0 } });
      let finish;
      client.on("slow", () => new Promise((resolve) => (finish = resolve)));
      ws.receive("slow||1");
      await flush();
      ws.drop();
      mock.timers.tick(10);
      const next = WS.instances.at(-1);
      next.open();
      finish("too late");
      await flush();
      assert.deepEqual(ws.sent, []);
      assert.deepEqual(next.sent, []);
    });

    it("off() removes a handler", async () => {
      const { client, ws } = connected();
      client.on("ev", () => "yes").off("ev");
      ws.receive("ev||1");
      await flush();
      assert.deepEqual(ws.sent, ["__ack_ev||1"]);
    });
  });

  describe("malformed frames", () => {
    it("go to onError as EtpFrameError; the connection stays and goes on", async () => {
      const { client, ws } = connected();
      const got = [];
      client.on("ok", (data) => {
        got.push(data);
      });
      for (const bad of ["no separator", "", "ev||x", "ev||1.5||d", "a|||b", "ev||18446744073709551615"]) {
        ws.receive(bad);
      }
      ws.receive(new Uint8Array([1, 2, 3]).buffer);
      ws.receive("ok||0||still here");
      await flush();
      assert.equal(errors.length, 7);
      assert.ok(errors.every((e) => e instanceof EtpFrameError));
      assert.equal(errors[0].message, "expected format: <eventName>||<ackId>||<eventData>, got: no separator");
      assert.equal(errors[5].message, 'parse ackId: strconv.Atoi: parsing "18446744073709551615": value out of range');
      assert.deepEqual(got, ["still here"]);
      assert.equal(ws.closedWith, null);
      assert.deepEqual(ws.sent, []);
    });
  });

  describe("connection lifecycle and reconnection", () => {
    it("calls onConnect on every open and onDisconnect with the close details", () => {
      let connects = 0;
      const client = etp("ws://h/", { WebSocket: WS, reconnect: { initialDelay: 100, jitter: 0 } });
      client.onConnect(() => connects++).onDisconnect((info) => disconnects.push(info));
      client.connect();
      WS.instances[0].open();
      WS.instances[0].drop(1001, "going away", true);
      assert.deepEqual(disconnects, [{ code: 1001, reason: "going away", wasClean: true, reconnectIn: 100 }]);
      assert.equal(client.connected, false);
      mock.timers.tick(99);
      assert.equal(WS.instances.length, 1);
      mock.timers.tick(1);
      assert.equal(WS.instances.length, 2);
      WS.instances[1].open();
      assert.equal(connects, 2);
      assert.equal(client.connected, true);
    });

    it("backs off exponentially with jitter, and starts over after a success", (t) => {
      t.mock.method(Math, "random", () => 0.5);
      const client = etp("ws://h/", { WebSocket: WS, reconnect: { initialDelay: 100, maxDelay: 350, factor: 2, jitter: 0.2 } });
      client.onDisconnect((info) => disconnects.push(info.reconnectIn));
      client.connect();
      for (let i = 0; i < 4; i++) {
        WS.instances.at(-1).drop();
        mock.timers.tick(disconnects.at(-1));
      }
      assert.deepEqual(disconnects, [90, 180, 315, 315]);
      WS.instances.at(-1).open();
      WS.instances.at(-1).drop();
      assert.equal(disconnects.at(-1), 90);
    });

    it("gives up after maxAttempts failed attempts in a row", () => {
      const client = etp("ws://h/", { WebSocket: WS, reconnect: { initialDelay: 10, jitter: 0, maxAttempts: 2 } });
      client.onDisconnect((info) => disconnects.push(info.reconnectIn));
      client.connect();
      WS.instances.at(-1).drop();
      mock.timers.tick(10);
      WS.instances.at(-1).drop();
      mock.timers.tick(20);
      WS.instances.at(-1).drop();
      mock.timers.tick(1000);
      assert.deepEqual(disconnects, [10, 20, null]);
      assert.equal(WS.instances.length, 3);
      client.connect(); // and may be started again
      assert.equal(WS.instances.length, 4);
    });

    it("never reconnects with reconnect: false", () => {
      const client = etp("ws://h/", { WebSocket: WS, reconnect: false });
      client.onDisconnect((info) => disconnects.push(info.reconnectIn));
      client.connect();
      WS.instances[0].open();
      WS.instances[0].drop();
      mock.timers.tick(60_000);
      assert.deepEqual(disconnects, [null]);
      assert.equal(WS.instances.length, 1);
    });

    it("close() stops a pending reconnection", () => {
      const client = etp("ws://h/", { WebSocket: WS, reconnect: { initialDelay: 10, jitter: 0 } });
      client.connect();
      WS.instances[0].drop();
      client.close();
      mock.timers.tick(60_000);
      assert.equal(WS.instances.length, 1);
      assert.throws(() => client.emit("ev"), { name: "EtpClosedError" });
    });

    it("close() ignores the old socket's late events", () => {
      const { client, ws } = connected();
      client.on("ev", () => {
        throw new Error("must not run");
      });
      client.close();
      assert.equal(ws.onmessage, null);
      assert.equal(ws.onclose, null);
      assert.equal(disconnects.length, 1);
      mock.timers.tick(60_000);
      assert.equal(WS.instances.length, 1);
    });

    it("close() checks the close code: 1000 and 3000..4999 only", () => {
      for (const code of [1000, 3000, 4999]) connected().client.close(code);
      for (const code of [999, 1001, 2999, 5000, 3000.5]) {
        assert.throws(() => connected().client.close(code), { name: "RangeError", message: /1000 or in 3000\.\.4999/ });
      }
    });

    it("reports WebSocket errors as EtpConnectionError", () => {
      const { ws } = connected({ reconnect: false });
      ws.drop();
      assert.equal(errors.length, 1);
      assert.ok(errors[0] instanceof EtpConnectionError);
      assert.equal(errors[0].message, "WebSocket error on ws://127.0.0.1:1/ws");
    });

    it("survives a throwing hook (its error goes to reportError)", (t) => {
      const reported = [];
      const hadReportError = "reportError" in globalThis;
      const original = globalThis.reportError;
      globalThis.reportError = (error) => reported.push(error.message);
      t.after(() => {
        if (hadReportError) globalThis.reportError = original;
        else delete globalThis.reportError;
      });
      const client = etp("ws://h/", { WebSocket: WS, reconnect: { initialDelay: 10, jitter: 0 } });
      client.onDisconnect(() => {
        throw new Error("hook bug");
      });
      client.connect();
      WS.instances[0].open();
      WS.instances[0].drop();
      assert.deepEqual(reported, ["hook bug"]);
      mock.timers.tick(10);
      assert.equal(WS.instances.length, 2);
    });

    it("reports an async hook's rejection to reportError too", async (t) => {
      const reported = [];
      const hadReportError = "reportError" in globalThis;
      const original = globalThis.reportError;
      globalThis.reportError = (error) => reported.push(error.message);
      t.after(() => {
        if (hadReportError) globalThis.reportError = original;
        else delete globalThis.reportError;
      });
      const client = etp("ws://h/", { WebSocket: WS });
      client.onConnect(async () => {
        throw new Error("async hook bug");
      });
      client.connect();
      WS.instances[0].open();
      await flush();
      assert.deepEqual(reported, ["async hook bug"]);
      assert.equal(client.connected, true);
    });
  });
});
