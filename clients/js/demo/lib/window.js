// One subscription's window, updated from snapshot, page and event frames (proto/PROTOCOL.md).
//
// Each message remembers the `seq` its state was read at: an event changes a message only when it is newer, so
// a page read after an event, and the event delivered after the page, never apply twice. Snapshots are immutable
// and reused: after a change only the changed messages (and the array) are new objects.
export class Window {
    entries = null;
    view = null;
    loadedAll = false;
    /** The last `seq` of the live stream (a snapshot's or an event's): where a resume starts. */
    liveSeq = null;
    /** Newest first; `null` for a user who does not take part. The same array until the window changes. */
    get messages() {
        if (this.entries === null)
            return null;
        if (this.view === null)
            this.view = Object.freeze(this.entries.map((entry) => entry.snapshot));
        return this.view;
    }
    reset(seq, messages, loadedAll) {
        this.liveSeq = seq;
        // A message that did not change keeps its object across a fresh snapshot too.
        const previous = new Map((this.entries ?? []).map((entry) => [entry.snapshot.id, entry.snapshot]));
        this.entries =
            messages === null
                ? null
                : messages.map((message) => {
                    const kept = previous.get(message.id);
                    return { snapshot: kept !== undefined && same(kept, message) ? kept : freeze(message), asOf: seq };
                });
        this.loadedAll = loadedAll;
        this.view = null;
    }
    /** Where an event falls: the server sends every `seq` to a window that is a list. */
    place(seq) {
        if (this.entries === null || this.liveSeq === null)
            return "next";
        if (seq <= this.liveSeq)
            return "duplicate";
        if (seq > this.liveSeq + 1)
            return "hole";
        return "next";
    }
    observeSeq(seq) {
        this.liveSeq = this.liveSeq === null ? seq : Math.max(this.liveSeq, seq);
    }
    /** What to send as `resume` after a reconnect; `null` asks for a fresh window. */
    resumePoint() {
        if (this.entries === null || this.liveSeq === null)
            return null;
        const oldest = this.entries.length > 0 ? this.entries[this.entries.length - 1].snapshot.seq : null;
        return { fromSeq: this.liveSeq, oldestSeq: oldest, loadedAll: this.loadedAll };
    }
    appendPage(seq, page, loadedAll) {
        if (this.entries === null)
            return;
        const known = new Set(this.entries.map((entry) => entry.snapshot.id));
        for (const message of page) {
            if (!known.has(message.id))
                this.entries.push({ snapshot: freeze(message), asOf: seq });
        }
        this.entries.sort((a, b) => b.snapshot.seq - a.snapshot.seq);
        this.loadedAll = loadedAll;
        this.view = null;
    }
    /** Applies an event at `seq`; says whether the window changed. */
    applyEvent(seq, event, me) {
        const entries = this.entries;
        if (entries === null)
            return false;
        const changed = this.apply(entries, seq, event, me);
        if (changed)
            this.view = null;
        return changed;
    }
    apply(entries, seq, event, me) {
        const messageId = typeof event.messageId === "string" ? event.messageId : "";
        switch (event.kind) {
            case "messageCreated": {
                const message = event.message;
                if (entries.some((entry) => entry.snapshot.id === message.id))
                    return false;
                let position = entries.findIndex((entry) => entry.snapshot.seq < message.seq);
                if (position === -1)
                    position = entries.length;
                // Older than everything loaded: it belongs to the part not loaded yet.
                if (position === entries.length && !this.loadedAll && entries.length > 0)
                    return false;
                entries.splice(position, 0, { snapshot: freeze(message), asOf: seq });
                return true;
            }
            case "messageEdited": {
                const edited = event.message;
                let changed = false;
                for (const entry of entries) {
                    if (entry.snapshot.id === edited.id && seq > entry.asOf) {
                        entry.snapshot = freeze({ ...edited, reactions: entry.snapshot.reactions });
                        entry.asOf = seq;
                        changed = true;
                    }
                    else if (entry.snapshot.referencedMessage?.id === edited.id) {
                        entry.snapshot = freeze({ ...entry.snapshot, referencedMessage: referenced(edited) });
                        changed = true;
                    }
                }
                return changed;
            }
            case "messageDeleted": {
                const before = entries.length;
                const kept = entries.filter((entry) => entry.snapshot.id !== messageId);
                entries.splice(0, entries.length, ...kept);
                for (const entry of entries) {
                    if (entry.snapshot.referencedMessage?.id === messageId) {
                        entry.snapshot = freeze({ ...entry.snapshot, referencedMessage: null });
                    }
                }
                return entries.length !== before;
            }
            case "allMessagesDeleted":
                entries.splice(0, entries.length);
                this.loadedAll = true;
                return true;
            case "reactionAdded":
            case "reactionRemoved": {
                const entry = entries.find((candidate) => candidate.snapshot.id === messageId);
                if (entry === undefined || seq <= entry.asOf)
                    return false;
                entry.asOf = seq;
                const emoji = String(event.emoji);
                const byMe = event.userId === me;
                const reactions = [...entry.snapshot.reactions];
                const index = reactions.findIndex((reaction) => reaction.emoji === emoji);
                if (event.kind === "reactionAdded") {
                    if (index >= 0) {
                        const reaction = reactions[index];
                        reactions[index] = { ...reaction, count: reaction.count + 1, currentUserReacted: reaction.currentUserReacted || byMe };
                    }
                    else {
                        reactions.push({ emoji, count: 1, currentUserReacted: byMe });
                    }
                }
                else if (index >= 0) {
                    const reaction = reactions[index];
                    const count = Math.max(0, reaction.count - 1);
                    if (count === 0)
                        reactions.splice(index, 1);
                    else
                        reactions[index] = { ...reaction, count, currentUserReacted: byMe ? false : reaction.currentUserReacted };
                }
                entry.snapshot = freeze({ ...entry.snapshot, reactions: reactions.map((reaction) => Object.freeze(reaction)) });
                return true;
            }
            default:
                return false;
        }
    }
}
function referenced(message) {
    const { id, type, sender, content, plaintext, custom, createdAt, editedAt, origin, referencedMessageId } = message;
    return Object.freeze({ id, type, sender, content, plaintext, custom, createdAt, editedAt, origin, referencedMessageId });
}
function freeze(value) {
    return Object.freeze(value);
}
/** Whether two snapshots of a message say the same (a kept object may then stand for the new one). */
function same(a, b) {
    return JSON.stringify(a) === JSON.stringify(b);
}
