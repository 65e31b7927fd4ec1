// etp.js: a dependency-free etp client for browsers (and any runtime with a WebSocket).
//
// The wire format (see ../../README.md and PROTOCOL.md): one WebSocket message is one
// frame `name||ackId||data`, split at the leftmost `||` into at most three parts. `ev||5`
// carries no data, `ev||5||` carries empty data. A frame with a non-zero ack id asks the
// peer to answer with `__ack_<name>||<ackId>[||data]`; answers are matched by id only.

/** The prefix of acknowledgement frames. */
export const ACK_PREFIX = "__ack_";

const SEPARATOR = "||";
const PIPE = 0x7c;
// Ack ids are Go `strconv.Atoi` integers on 64 bits.
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
// setTimeout fires at once for delays above 2^31 - 1 ms, so longer ack timeouts are refused.
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;
// How much of a malformed frame an error message quotes.
const PREVIEW_CHARS = 120;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8");

// ---------------------------------------------------------------------------------------
// Errors

/** Base class of every error this module produces. */
export class EtpError extends Error {
  /**
   * @param {string} message
   * @param {{cause?: unknown}} [options]
   */
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The connection is not open (not yet connected, reconnecting, or closed by `close()`),
 * or it ended while an acknowledgement was pending.
 */
export class EtpClosedError extends EtpError {}

/** No acknowledgement arrived within the timeout. */
export class EtpTimeoutError extends EtpError {
  /**
   * @param {string} event the event that asked for the acknowledgement
   * @param {number} timeoutMs the timeout that ran out
   */
  constructor(event, timeoutMs) {
    super(`no acknowledgement for event ${JSON.stringify(event)} within ${timeoutMs} ms`);
    /** @type {string} */
    this.event = event;
    /** @type {number} */
    this.timeoutMs = timeoutMs;
  }
}

/** The server sent a message that is not a valid etp frame. The connection stays open. */
export class EtpFrameError extends EtpError {}

/** An event handler threw, rejected, or returned something that cannot be sent. */
export class EtpHandlerError extends EtpError {
  /**
   * @param {string} event
   * @param {string} message
   * @param {unknown} [cause]
   */
  constructor(event, message, cause) {
    super(message, cause === undefined ? undefined : { cause });
    /** @type {string} */
    this.event = event;
  }
}

/** The WebSocket reported an error (the browser gives no detail; a close follows). */
export class EtpConnectionError extends EtpError {}

// ---------------------------------------------------------------------------------------
// Codec (pure functions, exported for tests and for other transports)

/**
 * Event data: a string travels in a text message, bytes in a binary message, and
 * `undefined` (or `null`) means "no data" (`ev||0`, as opposed to `ev||0||`).
 * @typedef {string | ArrayBuffer | ArrayBufferView | undefined | null} EtpData
 */

/**
 * Received data: a string when the message was text, a `Uint8Array` when it was binary,
 * `undefined` when the frame had only two parts (`ev||5`).
 * @typedef {string | Uint8Array | undefined} EtpReceived
 */

/**
 * One decoded frame.
 * @typedef {object} EtpFrame
 * @property {string} name the event name (for answers, including the `__ack_` prefix)
 * @property {bigint} ackId the ack id, exactly (ids beyond 2^53 are not rounded)
 * @property {EtpReceived} data
 */

/**
 * Parses an ack id with Go `strconv.Atoi` rules on 64 bits: an optional sign, one or more
 * ASCII digits, a value within the signed 64-bit range. Leading zeros are fine.
 * @param {string} text
 * @returns {bigint}
 * @throws {EtpFrameError} with Go's wording when `text` is not such an integer
 */
export function parseAckId(text) {
  if (!/^[+-]?[0-9]+$/.test(text)) {
    throw new EtpFrameError(`parse ackId: strconv.Atoi: parsing ${goQuote(text)}: invalid syntax`);
  }
  const value = BigInt(text);
  if (value < I64_MIN || value > I64_MAX) {
    throw new EtpFrameError(`parse ackId: strconv.Atoi: parsing ${goQuote(text)}: value out of range`);
  }
  return value;
}

/**
 * Decodes one WebSocket message into a frame, exactly as Go's `bytes.SplitN(msg, "||", 3)`.
 * @param {string | ArrayBuffer | ArrayBufferView} message text or binary message
 * @returns {EtpFrame}
 * @throws {EtpFrameError} when the message has no `||` or the ack id is not an integer
 */
export function decodeFrame(message) {
  if (typeof message === "string") {
    // `|` is ASCII and never part of a multi-byte UTF-8 sequence, so splitting the
    // decoded text finds the same separators as splitting the bytes.
    const first = message.indexOf(SEPARATOR);
    if (first < 0) throw malformed(message);
    const name = message.slice(0, first);
    const second = message.indexOf(SEPARATOR, first + 2);
    const idText = second < 0 ? message.slice(first + 2) : message.slice(first + 2, second);
    const data = second < 0 ? undefined : message.slice(second + 2);
    return { name, ackId: parseAckId(idText), data };
  }
  const bytes = asBytes(message);
  if (bytes === null) {
    throw new EtpFrameError(`unsupported message type ${describe(message)}`);
  }
  const first = findSeparator(bytes, 0);
  if (first < 0) throw malformed(decoder.decode(bytes));
  const second = findSeparator(bytes, first + 2);
  const name = decoder.decode(bytes.subarray(0, first));
  const idBytes = second < 0 ? bytes.subarray(first + 2) : bytes.subarray(first + 2, second);
  const data = second < 0 ? undefined : bytes.slice(second + 2);
  return { name, ackId: parseAckId(decoder.decode(idBytes)), data };
}

/**
 * Encodes a frame: a string when `data` is a string or absent (a text message), a
 * `Uint8Array` when `data` is binary (a binary message).
 * @param {string} name the event name (not validated here: see {@link validateEventName})
 * @param {bigint | number | string} ackId the ack id, written in decimal
 * @param {EtpData} data
 * @returns {string | Uint8Array}
 * @throws {TypeError} when `data` is neither a string, bytes, nor absent
 */
export function encodeFrame(name, ackId, data) {
  const head = `${name}${SEPARATOR}${ackId}`;
  if (data === undefined || data === null) return head;
  if (typeof data === "string") return `${head}${SEPARATOR}${data}`;
  const bytes = asBytes(data);
  if (bytes === null) {
    throw new TypeError(
      `etp data must be a string, an ArrayBuffer, a typed array or a DataView (got ${describe(data)}); ` +
        "encode other values first, for example with JSON.stringify",
    );
  }
  const prefix = encoder.encode(`${head}${SEPARATOR}`);
  const frame = new Uint8Array(prefix.length + bytes.length);
  frame.set(prefix, 0);
  frame.set(bytes, prefix.length);
  return frame;
}

/**
 * Checks that `name` can be sent as (or registered for) an event. Refused: non-strings,
 * names containing `||`, names ending in `|` (`a|` + `||` would read back as `a`), and
 * names starting with `__ack_` (the peer would take the event for an answer).
 * @param {unknown} name
 * @throws {TypeError}
 */
export function validateEventName(name) {
  if (typeof name !== "string") {
    throw new TypeError(`etp event name must be a string (got ${describe(name)})`);
  }
  if (name.startsWith(ACK_PREFIX)) {
    throw new TypeError(`etp event name ${JSON.stringify(name)} starts with the reserved prefix "${ACK_PREFIX}"`);
  }
  if (name.includes(SEPARATOR)) {
    throw new TypeError(`etp event name ${JSON.stringify(name)} contains the separator "||"`);
  }
  if (name.endsWith("|")) {
    throw new TypeError(`etp event name ${JSON.stringify(name)} ends with "|", which the peer would read as part of the separator`);
  }
}

/**
 * The delay before reconnection attempt `attempt` (0 for the first attempt after a
 * disconnect): `min(maxDelay, initialDelay * factor^attempt)`, reduced by a random share
 * of at most `jitter` so that many clients do not reconnect in lockstep.
 * @param {number} attempt
 * @param {ReconnectOptions} options
 * @param {number} random a number in [0, 1), normally `Math.random()`
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt, options, random) {
  const base = Math.min(options.maxDelay, options.initialDelay * options.factor ** attempt);
  return Math.round(base * (1 - options.jitter * random));
}

function findSeparator(bytes, from) {
  for (let i = bytes.indexOf(PIPE, from); i >= 0 && i + 1 < bytes.length; i = bytes.indexOf(PIPE, i + 1)) {
    if (bytes[i + 1] === PIPE) return i;
  }
  return -1;
}

/** @returns {Uint8Array | null} */
function asBytes(value) {
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

function malformed(text) {
  return new EtpFrameError(`expected format: <eventName>||<ackId>||<eventData>, got: ${preview(text)}`);
}

function preview(text) {
  return text.length > PREVIEW_CHARS ? `${text.slice(0, PREVIEW_CHARS)}... (${text.length} chars)` : text;
}

// Go's %q, near enough for an error message.
function goQuote(text) {
  return JSON.stringify(preview(text));
}

function describe(value) {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value;
}

function isEmpty(data) {
  if (data === undefined || data === null || data === "") return true;
  const bytes = asBytes(data);
  return bytes !== null && bytes.length === 0;
}

// ---------------------------------------------------------------------------------------
// Client

/**
 * Reconnection with jittered exponential backoff.
 * @typedef {object} ReconnectOptions
 * @property {number} initialDelay ms before the first attempt (default 250)
 * @property {number} maxDelay upper bound of one delay in ms (default 10000)
 * @property {number} factor growth per failed attempt (default 2)
 * @property {number} jitter share of each delay taken off at random, 0..1 (default 0.5)
 * @property {number} maxAttempts attempts in a row before giving up (default Infinity)
 */

/**
 * @typedef {object} EtpOptions
 * @property {Record<string, string>} [params] added to the URL's query (as the upstream client)
 * @property {number} [ackTimeout] default timeout of `emitWithAck`, ms (default 10000)
 * @property {Partial<ReconnectOptions> | false} [reconnect] `false` to never reconnect
 * @property {typeof WebSocket} [WebSocket] the WebSocket constructor (default: the global one)
 */

/**
 * What a handler receives besides the data.
 * @typedef {object} EtpEventInfo
 * @property {string} name the event name
 * @property {boolean} binary true when the frame came in a binary message
 * @property {string | null} ackId the ack id in decimal when the server asked for an
 *   acknowledgement (the handler's return value is the answer), else `null`
 */

/**
 * An event handler. Its return value (or what its promise resolves to) is the answer
 * sent back when the server asked for an acknowledgement.
 * @callback EtpHandler
 * @param {EtpReceived} data
 * @param {EtpEventInfo} info
 * @returns {EtpData | Promise<EtpData>}
 */

/**
 * Why a connection ended, given to `onDisconnect`.
 * @typedef {object} EtpDisconnect
 * @property {number} code the WebSocket close code (1006 when the connection dropped)
 * @property {string} reason the close reason
 * @property {boolean} wasClean whether the close handshake completed
 * @property {number | null} reconnectIn ms until the next attempt, `null` when none follows
 */

const DEFAULT_RECONNECT = Object.freeze({
  initialDelay: 250,
  maxDelay: 10_000,
  factor: 2,
  jitter: 0.5,
  maxAttempts: Infinity,
});

/**
 * An etp client: one WebSocket at a time, reconnected with backoff until `close()`.
 *
 * ```js
 * import etp from "/etp.js";
 * const client = etp("/ws");
 * client.on("who", () => "alice");                  // answers the server's ack request
 * client.onConnect(async () => console.log(await client.emitWithAck("join", "lobby")));
 * client.connect();
 * ```
 */
export class EtpClient {
  /** @type {string} */ #url;
  /** @type {number} */ #ackTimeout;
  /** @type {ReconnectOptions | null} */ #reconnect;
  /** @type {typeof WebSocket} */ #WebSocket;
  /** @type {Map<string, EtpHandler>} */ #handlers = new Map();
  /** @type {((name: string, data: EtpReceived, info: EtpEventInfo) => EtpData | Promise<EtpData>) | null} */
  #unknown = null;
  #onConnect = () => {};
  /** @type {(info: EtpDisconnect) => void} */ #onDisconnect = () => {};
  /** @type {(error: EtpError) => void} */ #onError = () => {};
  /** @type {WebSocket | null} the socket of the current connection or attempt */
  #ws = null;
  /** true between connect() and close(): the client wants to be connected */
  #active = false;
  #attempt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */ #retryTimer = null;
  #nextId = 1;
  /** @type {Map<string, {event: string, resolve: (data: EtpReceived) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout>}>} */
  #pending = new Map();

  /**
   * @param {string} url `ws://`, `wss://`, `http://` or `https://`; in a browser also a
   *   path relative to the page (`/ws`)
   * @param {EtpOptions} [options]
   */
  constructor(url, options = {}) {
    const WebSocketImpl = options.WebSocket ?? globalThis.WebSocket;
    if (typeof WebSocketImpl !== "function") {
      throw new TypeError("no WebSocket constructor: pass one as options.WebSocket");
    }
    this.#WebSocket = WebSocketImpl;
    this.#url = resolveUrl(url, options.params);
    this.#ackTimeout = checkTimeout(options.ackTimeout ?? 10_000, "options.ackTimeout");
    this.#reconnect = options.reconnect === false ? null : reconnectOptions(options.reconnect ?? {});
  }

  /** The URL dialled. */
  get url() {
    return this.#url;
  }

  /** True while the WebSocket is open. */
  get connected() {
    return this.#ws !== null && this.#ws.readyState === this.#WebSocket.OPEN;
  }

  /** Acknowledgements waiting for an answer. */
  get pendingAcks() {
    return this.#pending.size;
  }

  /**
   * Called each time a connection opens (again after every reconnection).
   * @param {() => void} hook
   * @returns {this}
   */
  onConnect(hook) {
    this.#onConnect = checkFunction(hook, "onConnect");
    return this;
  }

  /**
   * Called each time a connection ends or an attempt fails, after pending
   * acknowledgements have failed.
   * @param {(info: EtpDisconnect) => void} hook
   * @returns {this}
   */
  onDisconnect(hook) {
    this.#onDisconnect = checkFunction(hook, "onDisconnect");
    return this;
  }

  /**
   * Called for malformed frames ({@link EtpFrameError}), failing handlers
   * ({@link EtpHandlerError}) and WebSocket errors ({@link EtpConnectionError}). None of
   * them closes the connection.
   * @param {(error: EtpError) => void} hook
   * @returns {this}
   */
  onError(hook) {
    this.#onError = checkFunction(hook, "onError");
    return this;
  }

  /**
   * Registers the handler of an event (replacing any previous one).
   * @param {string} name
   * @param {EtpHandler} handler
   * @returns {this}
   * @throws {TypeError} for a name that cannot travel on the wire
   */
  on(name, handler) {
    validateEventName(name);
    this.#handlers.set(name, checkFunction(handler, "on"));
    return this;
  }

  /**
   * Removes the handler of an event.
   * @param {string} name
   * @returns {this}
   */
  off(name) {
    this.#handlers.delete(name);
    return this;
  }

  /**
   * Registers the handler of events that have no handler of their own.
   * @param {(name: string, data: EtpReceived, info: EtpEventInfo) => EtpData | Promise<EtpData>} handler
   * @returns {this}
   */
  onUnknownEvent(handler) {
    this.#unknown = checkFunction(handler, "onUnknownEvent");
    return this;
  }

  /**
   * Starts connecting, and reconnecting after each disconnect until {@link close}.
   * Does nothing when already started.
   * @returns {this}
   */
  connect() {
    if (this.#active) return this;
    this.#active = true;
    this.#attempt = 0;
    this.#open();
    return this;
  }

  /**
   * Closes the connection, stops reconnecting and fails pending acknowledgements with
   * {@link EtpClosedError}. `connect()` may start again later.
   * @param {number} [code] close code (default 1000)
   * @param {string} [reason]
   * @returns {this}
   * @throws {RangeError} for a code other than 1000 or 3000..4999 (what browsers allow)
   */
  close(code = 1000, reason = "") {
    if (code !== 1000 && !(Number.isInteger(code) && code >= 3000 && code <= 4999)) {
      throw new RangeError(`close code must be 1000 or in 3000..4999 (got ${code})`);
    }
    this.#active = false;
    if (this.#retryTimer !== null) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    }
    const ws = this.#ws;
    this.#ws = null;
    this.#failPending("the client was closed");
    if (ws !== null) {
      detach(ws);
      ws.close(code, reason);
      this.#hook(this.#onDisconnect, { code, reason, wasClean: true, reconnectIn: null });
    }
    return this;
  }

  /**
   * Sends an event without asking for an acknowledgement.
   * @param {string} name
   * @param {EtpData} [data] a string (text message), bytes (binary message), or nothing
   * @throws {TypeError} for an invalid name or data
   * @throws {EtpClosedError} when not connected
   */
  emit(name, data) {
    validateEventName(name);
    const frame = encodeFrame(name, 0, data);
    this.#openSocket(name).send(frame);
  }

  /**
   * Sends an event and waits for the server's answer.
   * @param {string} name
   * @param {EtpData} [data]
   * @param {number} [timeoutMs] overrides `options.ackTimeout`
   * @returns {Promise<EtpReceived>} the answer's data; rejects with {@link EtpTimeoutError},
   *   {@link EtpClosedError} (not connected, or the connection ended first), or
   *   `TypeError`/`RangeError` for invalid arguments
   */
  emitWithAck(name, data, timeoutMs) {
    return new Promise((resolve, reject) => {
      validateEventName(name);
      const timeout = timeoutMs === undefined ? this.#ackTimeout : checkTimeout(timeoutMs, "timeoutMs");
      const ws = this.#openSocket(name);
      const id = String(this.#takeId());
      const frame = encodeFrame(name, id, data);
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new EtpTimeoutError(name, timeout));
      }, timeout);
      this.#pending.set(id, { event: name, resolve, reject, timer });
      try {
        ws.send(frame);
      } catch (error) {
        clearTimeout(timer);
        this.#pending.delete(id);
        throw error;
      }
    });
  }

  #takeId() {
    const id = this.#nextId;
    // Ids stay exact in a JavaScript number (and in any peer's); 2^53 ids never run out
    // in practice, but wrapping keeps the rule true regardless.
    this.#nextId = id >= Number.MAX_SAFE_INTEGER ? 1 : id + 1;
    return id;
  }

  #openSocket(name) {
    const ws = this.#ws;
    if (ws === null || ws.readyState !== this.#WebSocket.OPEN) {
      throw new EtpClosedError(`cannot emit ${JSON.stringify(name)}: not connected`);
    }
    return ws;
  }

  #open() {
    this.#retryTimer = null;
    const ws = new this.#WebSocket(this.#url);
    ws.binaryType = "arraybuffer";
    this.#ws = ws;
    this.#nextId = 1;
    ws.onopen = () => {
      this.#attempt = 0;
      this.#hook(this.#onConnect);
    };
    ws.onmessage = (event) => this.#receive(ws, event.data);
    ws.onerror = () => {
      this.#hook(this.#onError, new EtpConnectionError(`WebSocket error on ${this.#url}`));
    };
    ws.onclose = (event) => this.#closed(ws, event);
  }

  #closed(ws, event) {
    detach(ws);
    if (ws !== this.#ws) return;
    this.#ws = null;
    this.#failPending(`the connection closed (code ${event.code})`);
    let reconnectIn = null;
    if (this.#active && this.#reconnect !== null && this.#attempt < this.#reconnect.maxAttempts) {
      reconnectIn = backoffDelay(this.#attempt, this.#reconnect, Math.random());
      this.#attempt += 1;
      this.#retryTimer = setTimeout(() => this.#open(), reconnectIn);
    } else {
      this.#active = false;
    }
    this.#hook(this.#onDisconnect, {
      code: event.code,
      reason: event.reason ?? "",
      wasClean: Boolean(event.wasClean),
      reconnectIn,
    });
  }

  #failPending(why) {
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const entry of pending) {
      clearTimeout(entry.timer);
      entry.reject(new EtpClosedError(`no acknowledgement for event ${JSON.stringify(entry.event)}: ${why}`));
    }
  }

  #receive(ws, message) {
    let frame;
    try {
      frame = decodeFrame(message);
    } catch (error) {
      this.#hook(this.#onError, error instanceof EtpError ? error : new EtpFrameError(String(error)));
      return;
    }
    if (frame.name.startsWith(ACK_PREFIX)) {
      // Answers are matched by id only, and unknown or late ids are dropped (as Go does).
      const key = frame.ackId.toString();
      const entry = this.#pending.get(key);
      if (entry !== undefined) {
        this.#pending.delete(key);
        clearTimeout(entry.timer);
        entry.resolve(frame.data);
      }
      return;
    }
    const wantsAck = frame.ackId !== 0n;
    const info = {
      name: frame.name,
      binary: typeof message !== "string",
      ackId: wantsAck ? frame.ackId.toString() : null,
    };
    this.#dispatch(frame, info).then((reply) => {
      // An answer belongs to the connection the request came on.
      if (wantsAck && ws === this.#ws && ws.readyState === this.#WebSocket.OPEN) {
        ws.send(encodeFrame(`${ACK_PREFIX}${frame.name}`, info.ackId, isEmpty(reply) ? undefined : reply));
      }
    });
  }

  // Runs the handler; resolves to the answer, or to nothing after reporting a failure,
  // so that every ack request is answered.
  async #dispatch(frame, info) {
    const handler = this.#handlers.get(frame.name);
    let reply;
    try {
      if (handler !== undefined) {
        reply = await handler(frame.data, info);
      } else if (this.#unknown !== null) {
        reply = await this.#unknown(frame.name, frame.data, info);
      }
    } catch (error) {
      this.#hook(this.#onError, new EtpHandlerError(frame.name, `handler of ${JSON.stringify(frame.name)} failed: ${error}`, error));
      return undefined;
    }
    if (info.ackId !== null && !isEmpty(reply) && typeof reply !== "string" && asBytes(reply) === null) {
      this.#hook(
        this.#onError,
        new EtpHandlerError(frame.name, `handler of ${JSON.stringify(frame.name)} returned ${describe(reply)}; an answer must be a string or bytes`),
      );
      return undefined;
    }
    return reply;
  }

  // A throwing hook must not break the client's state: its error goes to the host's
  // error reporting (the console and `window.onerror` in a browser) and the client goes on.
  // An async hook's rejection is reported the same way.
  #hook(hook, ...args) {
    try {
      const result = hook(...args);
      if (typeof result?.then === "function") result.then(undefined, reportHookError);
    } catch (error) {
      reportHookError(error);
    }
  }
}

/**
 * Creates a client (not yet connected: call `connect()`), as the upstream JS client's
 * default export does.
 * @param {string} url
 * @param {EtpOptions} [options]
 * @returns {EtpClient}
 */
export default function etp(url, options) {
  return new EtpClient(url, options);
}

function reportHookError(error) {
  if (typeof globalThis.reportError === "function") globalThis.reportError(error);
  else console.error("etp: a hook failed:", error);
}

function detach(ws) {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onerror = null;
  ws.onclose = null;
}

function resolveUrl(url, params) {
  if (typeof url !== "string") throw new TypeError(`etp URL must be a string (got ${describe(url)})`);
  const base = globalThis.location?.href;
  const parsed = base === undefined ? new URL(url) : new URL(url, base);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  else if (parsed.protocol === "https:") parsed.protocol = "wss:";
  else if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
    throw new TypeError(`etp URL must be ws:, wss:, http: or https: (got ${JSON.stringify(url)})`);
  }
  for (const [key, value] of Object.entries(params ?? {})) parsed.searchParams.append(key, String(value));
  return parsed.href;
}

function reconnectOptions(given) {
  const options = { ...DEFAULT_RECONNECT, ...given };
  const positive = (key) => {
    if (!(typeof options[key] === "number" && options[key] > 0)) {
      throw new RangeError(`options.reconnect.${key} must be a positive number (got ${options[key]})`);
    }
  };
  positive("initialDelay");
  positive("maxDelay");
  positive("maxAttempts");
  if (!(typeof options.factor === "number" && options.factor >= 1)) {
    throw new RangeError(`options.reconnect.factor must be a number >= 1 (got ${options.factor})`);
  }
  if (!(typeof options.jitter === "number" && options.jitter >= 0 && options.jitter <= 1)) {
    throw new RangeError(`options.reconnect.jitter must be between 0 and 1 (got ${options.jitter})`);
  }
  if (options.maxDelay > MAX_TIMEOUT_MS) {
    throw new RangeError(`options.reconnect.maxDelay must be at most ${MAX_TIMEOUT_MS} ms (got ${options.maxDelay})`);
  }
  return Object.freeze(options);
}

function checkTimeout(value, what) {
  if (!(typeof value === "number" && Number.isFinite(value) && value > 0)) {
    throw new RangeError(`${what} must be a positive number of milliseconds (got ${value})`);
  }
  if (value > MAX_TIMEOUT_MS) {
    throw new RangeError(`${what} must be at most ${MAX_TIMEOUT_MS} ms (got ${value})`);
  }
  return value;
}

function checkFunction(value, what) {
  if (typeof value !== "function") throw new TypeError(`${what} needs a function (got ${describe(value)})`);
  return value;
}
