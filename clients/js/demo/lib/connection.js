// The socket under a session: requests and their replies by id, frames by conversation, reconnection with
// jittered backoff, and the token (fetched again before it expires, and after a refusal).
import { NatterError } from "./types.js";
const OPEN = 1;
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 10_000;
/** A token is replaced this long before its `exp`. */
const REFRESH_BEFORE_MS = 60_000;
export class Connection {
    options;
    WebSocketImpl;
    socket = null;
    token;
    nextId = 1;
    pending = new Map();
    waitingForLive = [];
    attempts = 0;
    everOpened = false;
    refreshTimer = null;
    retryTimer = null;
    stateValue = "connecting";
    stateListeners = new Set();
    endedWith = null;
    /** Frames of subscriptions, by conversation. */
    onFrame = () => { };
    /** A new connection is live after a lost one: subscriptions resume. */
    onReconnected = () => { };
    /** The session ended for good. */
    onTerminated = () => { };
    constructor(options) {
        this.options = options;
        const impl = options.WebSocket ?? globalThis.WebSocket;
        if (impl === undefined) {
            throw new NatterError("NO_WEBSOCKET", ["pass a WebSocket implementation (the `ws` package in Node 20)"]);
        }
        if (options.token === undefined && options.tokenFetcher === undefined) {
            throw new NatterError("NO_TOKEN", ["give a token or a tokenFetcher"]);
        }
        this.WebSocketImpl = impl;
        this.token = options.token ?? null;
        void this.open();
    }
    get state() {
        return this.stateValue;
    }
    onStateChange(listener) {
        this.stateListeners.add(listener);
        return () => this.stateListeners.delete(listener);
    }
    /** Sends a request once the connection is live; resolves with its `result`, rejects with its error. */
    async request(frame) {
        while (this.stateValue !== "live") {
            if (this.endedWith !== null)
                throw this.endedWith;
            await new Promise((resolve) => this.waitingForLive.push(resolve));
        }
        const id = String(this.nextId++);
        return new Promise((resolve, reject) => {
            this.pending.set(id, { resolve, reject });
            this.socket?.send(JSON.stringify({ ...frame, id }));
        });
    }
    /** Closes the session for good. */
    close() {
        this.terminate(new NatterError("CLOSED", ["the session was closed"]), 1000);
    }
    setState(state) {
        if (this.stateValue === state)
            return;
        this.stateValue = state;
        for (const listener of this.stateListeners)
            listener(state);
        if (state === "live" || state === "closed") {
            for (const wake of this.waitingForLive.splice(0))
                wake();
        }
    }
    async open() {
        if (this.endedWith !== null)
            return;
        try {
            if (this.token === null || (this.options.tokenFetcher !== undefined && expiresSoon(this.token))) {
                this.token = await this.fetchToken();
            }
        }
        catch (error) {
            this.scheduleRetry();
            return;
        }
        if (this.endedWith !== null)
            return;
        const base = this.options.host.replace(/\/+$/, "").replace(/^http(s?):\/\//, "ws$1://");
        const url = `${base}/v1/${encodeURIComponent(this.options.appId)}/realtime?token=${encodeURIComponent(this.token)}`;
        let socket;
        try {
            socket = new this.WebSocketImpl(url);
        }
        catch {
            this.scheduleRetry();
            return;
        }
        this.socket = socket;
        let opened = false;
        socket.onopen = () => {
            opened = true;
            this.attempts = 0;
            const reconnected = this.everOpened;
            this.everOpened = true;
            this.setState("live");
            this.scheduleRefresh();
            if (reconnected)
                this.onReconnected();
        };
        socket.onmessage = (event) => this.receive(event.data);
        socket.onerror = () => { };
        socket.onclose = (event) => {
            if (this.socket !== socket)
                return;
            this.socket = null;
            this.failPending(new NatterError("CLOSED", ["the connection closed"]));
            if (this.endedWith !== null)
                return;
            if (event.code === 4001 && this.options.tokenFetcher === undefined) {
                this.terminate(new NatterError("TOKEN_EXPIRED", ["the token expired and no tokenFetcher can replace it"]));
                return;
            }
            // Refused before it opened (an expired or refused token, say), or closed for an expired token: a new one.
            if (!opened || event.code === 4001)
                this.token = this.options.tokenFetcher !== undefined ? null : this.token;
            this.scheduleRetry();
        };
    }
    scheduleRetry() {
        if (this.endedWith !== null)
            return;
        this.attempts += 1;
        if (this.attempts > (this.options.maxReconnectAttempts ?? 30)) {
            this.terminate(new NatterError("CONNECTION_FAILED", [`gave up after ${this.attempts - 1} attempts`]));
            return;
        }
        this.setState(this.everOpened ? "reconnecting" : "connecting");
        const ceiling = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** Math.min(this.attempts - 1, 10));
        const delay = ceiling * (0.5 + Math.random() * 0.5);
        this.retryTimer = setTimeout(() => void this.open(), delay);
    }
    scheduleRefresh() {
        if (this.refreshTimer !== null)
            clearTimeout(this.refreshTimer);
        this.refreshTimer = null;
        const expiresAt = this.token === null ? null : tokenExpiry(this.token);
        if (this.options.tokenFetcher === undefined || expiresAt === null)
            return;
        const delay = Math.max(1_000, expiresAt - REFRESH_BEFORE_MS - Date.now());
        this.refreshTimer = setTimeout(() => void this.refresh(), delay);
    }
    /** Replaces the token on the live socket (`updateToken`). */
    async refresh() {
        try {
            const token = await this.fetchToken();
            await this.request({ type: "updateToken", token });
            this.token = token;
        }
        catch {
            // The socket will close with 4001 at expiry, and the next connection fetches a token again.
        }
        this.scheduleRefresh();
    }
    async fetchToken() {
        if (this.options.tokenFetcher === undefined)
            return this.token ?? "";
        const token = await this.options.tokenFetcher();
        if (typeof token !== "string" || token.length === 0)
            throw new NatterError("NO_TOKEN", ["tokenFetcher gave no token"]);
        return token;
    }
    receive(data) {
        let frame;
        try {
            frame = JSON.parse(typeof data === "string" ? data : String(data));
        }
        catch {
            return;
        }
        if (frame.type === "ok" || frame.type === "error") {
            const id = typeof frame.id === "string" ? frame.id : null;
            const waiting = id === null ? undefined : this.pending.get(id);
            if (id === null || waiting === undefined)
                return;
            this.pending.delete(id);
            if (frame.type === "ok")
                waiting.resolve(frame.result ?? {});
            else
                waiting.reject(new NatterError(String(frame.errorCode), frame.reasons ?? []));
            return;
        }
        this.onFrame(frame);
    }
    failPending(error) {
        const waiting = [...this.pending.values()];
        this.pending.clear();
        for (const { reject } of waiting)
            reject(error);
    }
    terminate(error, code = 1000) {
        if (this.endedWith !== null)
            return;
        this.endedWith = error;
        if (this.refreshTimer !== null)
            clearTimeout(this.refreshTimer);
        if (this.retryTimer !== null)
            clearTimeout(this.retryTimer);
        const socket = this.socket;
        this.socket = null;
        if (socket !== null && socket.readyState === OPEN)
            socket.close(code);
        else if (socket !== null)
            socket.onopen = () => socket.close(code);
        this.failPending(error);
        this.setState("closed");
        this.onTerminated(error);
    }
}
/** `exp` of a JWT, in milliseconds; `null` without one. */
function tokenExpiry(token) {
    try {
        const payload = token.split(".")[1] ?? "";
        const json = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/")));
        return typeof json.exp === "number" ? json.exp * 1000 : null;
    }
    catch {
        return null;
    }
}
function expiresSoon(token) {
    const expiresAt = tokenExpiry(token);
    return expiresAt !== null && expiresAt - REFRESH_BEFORE_MS < Date.now();
}
