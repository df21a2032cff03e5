// The states every subscription goes through, `pending` → `active` → `unsubscribed` | `error`, with the
// `connected` and `terminated` promises the Data API's subscriptions have.

import { NatterError } from "./types.js";

export type EndedState = { readonly type: "unsubscribed" } | { readonly type: "error"; readonly error: NatterError };

export class Lifecycle<Active extends { readonly type: "active" }> {
  current: { readonly type: "pending" } | Active | EndedState = { type: "pending" };
  /** Resolves with the first active state; rejects if the subscription ends first. */
  readonly connected: Promise<Active>;
  /** Resolves when the subscription ends (`unsubscribed` or `error`). */
  readonly terminated: Promise<EndedState>;
  private resolveConnected!: (state: Active) => void;
  private rejectConnected!: (error: NatterError) => void;
  private resolveTerminated!: (state: EndedState) => void;

  constructor() {
    this.connected = new Promise((resolve, reject) => {
      this.resolveConnected = resolve;
      this.rejectConnected = reject;
    });
    this.connected.catch(() => {});
    this.terminated = new Promise((resolve) => (this.resolveTerminated = resolve));
  }

  get ended(): boolean {
    return this.current.type === "unsubscribed" || this.current.type === "error";
  }

  /** Moves to `state`; returns the state before, or `null` if the subscription had ended (nothing changes). */
  activate(state: Active): { readonly type: "pending" } | Active | null {
    if (this.ended) return null;
    const previous = this.current as { readonly type: "pending" } | Active;
    this.current = state;
    if (previous.type === "pending") this.resolveConnected(state);
    return previous;
  }

  end(state: EndedState, what: string): void {
    if (this.ended) return;
    this.current = state;
    if (state.type === "error") this.rejectConnected(state.error);
    else this.rejectConnected(new NatterError("UNSUBSCRIBED", [`unsubscribed before the first ${what}`]));
    this.resolveTerminated(state);
  }
}
