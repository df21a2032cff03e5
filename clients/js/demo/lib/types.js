// The shapes the gateway sends (proto/PROTOCOL.md), named as in the TalkJS Data API.
/** An error the gateway (or the connection) gave: `code` as in proto/PROTOCOL.md, with its reasons. */
export class NatterError extends Error {
    code;
    reasons;
    constructor(code, reasons = []) {
        super(reasons.length > 0 ? `${code}: ${reasons.join("; ")}` : code);
        this.name = "NatterError";
        this.code = code;
        this.reasons = reasons;
    }
}
