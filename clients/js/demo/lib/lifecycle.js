// The states every subscription goes through, `pending` → `active` → `unsubscribed` | `error`, with the
// `connected` and `terminated` promises the Data API's subscriptions have.
import { NatterError } from "./types.js";
export class Lifecycle {
    current = { type: "pending" };
    /** Resolves with the first active state; rejects if the subscription ends first. */
    connected;
    /** Resolves when the subscription ends (`unsubscribed` or `error`). */
    terminated;
    resolveConnected;
    rejectConnected;
    resolveTerminated;
    constructor() {
        this.connected = new Promise((resolve, reject) => {
            this.resolveConnected = resolve;
            this.rejectConnected = reject;
        });
        this.connected.catch(() => { });
        this.terminated = new Promise((resolve) => (this.resolveTerminated = resolve));
    }
    get ended() {
        return this.current.type === "unsubscribed" || this.current.type === "error";
    }
    /** Moves to `state`; returns the state before, or `null` if the subscription had ended (nothing changes). */
    activate(state) {
        if (this.ended)
            return null;
        const previous = this.current;
        this.current = state;
        if (previous.type === "pending")
            this.resolveConnected(state);
        return previous;
    }
    end(state, what) {
        if (this.ended)
            return;
        this.current = state;
        if (state.type === "error")
            this.rejectConnected(state.error);
        else
            this.rejectConnected(new NatterError("UNSUBSCRIBED", [`unsubscribed before the first ${what}`]));
        this.resolveTerminated(state);
    }
}
