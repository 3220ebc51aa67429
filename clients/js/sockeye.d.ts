// TypeScript declarations for sockeye.js (a sockeye.v1 client, docs/PROTOCOL.md).

export declare const PROTOCOL: 'sockeye.v1';
export declare const Kind: Readonly<{ DATA: 1; ACK: 2; WELCOME: 3; RESUME: 4; ERROR: 5 }>;
export declare const WelcomeStatus: Readonly<{ NEW: 0; RESUMED: 1; REFUSED_UNKNOWN: 2; REFUSED_EXPIRED: 3 }>;

export type DeadLetterReason = 'ResendMaxTries' | 'MessageMaxAge' | 'SessionLost';

export declare class MalformedError extends Error { code: number; constructor(message: string, code?: number); }
export declare class SendError extends Error { reason: 'Full' | 'TooLarge' | 'Closed'; constructor(reason: 'Full' | 'TooLarge' | 'Closed'); }
export declare class DeadLetterError extends Error {
  reason: DeadLetterReason; seq: number; possiblyDelivered: boolean; payload: string | Uint8Array;
  constructor(reason: DeadLetterReason, seq: number, possiblyDelivered: boolean, payload: string | Uint8Array);
}

export interface DataEnvelope { kind: 'data'; text: boolean; void: boolean; seq: number; ack: number; payload: Uint8Array }
export interface AckEnvelope { kind: 'ack'; ack: number }
export interface WelcomeEnvelope { kind: 'welcome'; status: number; sessionId: Uint8Array; token: Uint8Array; lastDelivered: number; expirySecs: number }
export interface ResumeEnvelope { kind: 'resume'; sessionId: Uint8Array; token: Uint8Array; lastDelivered: number }
export interface ErrorEnvelope { kind: 'error'; code: number; reason: string }
export type Envelope = DataEnvelope | AckEnvelope | WelcomeEnvelope | ResumeEnvelope | ErrorEnvelope;

export declare function encodeVarint(value: number | bigint): Uint8Array;
export declare function decodeVarint(bytes: Uint8Array, offset?: number): { value: number | bigint; next: number };
export declare function encodeEnvelope(e: Envelope): Uint8Array;
export declare function decodeEnvelope(input: Uint8Array | ArrayBuffer): Envelope;
export declare function base64url(bytes: Uint8Array): string;
export declare function fromBase64url(s: string): Uint8Array;
export declare function resumeValue(r: Omit<ResumeEnvelope, 'kind'>): string;

export interface SessionStorageLike { getItem(k: string): string | null; setItem(k: string, v: string): void; removeItem(k: string): void }

export interface ClientOptions {
  WebSocket?: any;
  token?: string;
  windowMessages?: number;
  windowBytes?: number;
  ackDelay?: number;
  ackEveryMessages?: number;
  rtoInitial?: number;
  rtoMin?: number;
  rtoMax?: number;
  resendMaxTries?: number;
  messageMaxAge?: number;
  reconnectInitialDelay?: number;
  reconnectMaxDelay?: number;
  jitterPercent?: number;
  maxAttempts?: number;
  handshakeTimeout?: number;
  /**
   * Where the session is kept across page reloads, e.g. `sessionStorage`: the session id and
   * token, the position delivered so far and the unacknowledged messages, written once per
   * task that changed them. A client built over the same storage and key resumes the session
   * and resends those messages (their promises are gone; `acked`/`deadletter` report them).
   */
  storage?: SessionStorageLike;
  /** The key in `storage` (default `'sockeye.session'`); one per session kept side by side. */
  storageKey?: string;
  clock?: { now(): number };
  setTimeout?: (fn: () => void, ms: number) => any;
  clearTimeout?: (id: any) => void;
  random?: () => number;
  autoConnect?: boolean;
}

export type ConnectionState = 'connecting' | 'connected' | 'resuming' | 'resumed' | 'refused' | 'disconnected';

export interface DeadLetter { seq: number; reason: DeadLetterReason; possiblyDelivered: boolean; payload: string | Uint8Array }

export interface ClientEvents {
  message: (payload: string | Uint8Array, seq: number) => void;
  acked: (info: { seq: number }) => void;
  deadletter: (d: DeadLetter) => void;
  state: (state: ConnectionState, info?: any) => void;
  connecting: () => void;
  connected: () => void;
  resuming: () => void;
  resumed: () => void;
  refused: (info: { status: number; lost: DeadLetterError[] }) => void;
  disconnected: (info: { code: number; reason: string }) => void;
  unresponsive: (info: { seq?: number }) => void;
  error: (e: Error | ErrorEnvelope) => void;
  giveup: (info: { failures: number }) => void;
}

export declare class ReliableClient {
  constructor(url: string, options?: ClientOptions);
  readonly url: string;
  state: ConnectionState;
  session: { id: Uint8Array; token: Uint8Array } | null;
  delivered: number;
  readonly inFlight: { messages: number; bytes: number };
  readonly rto: number;
  on<K extends keyof ClientEvents>(type: K, fn: ClientEvents[K]): this;
  off<K extends keyof ClientEvents>(type: K, fn: ClientEvents[K]): this;
  /** Resolves once acknowledged, rejects with a DeadLetterError; `seq` names it in `acked` and `deadletter`. */
  send(data: string | Uint8Array | ArrayBuffer): Promise<void> & { readonly seq: number };
  connect(): void;
  reconnectNow(): void;
  close(): void;
  onRttSample(ms: number): void;
}
