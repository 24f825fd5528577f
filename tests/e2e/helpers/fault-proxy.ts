/**
 * TCP fault-injection proxy for e2e tests: 127.0.0.1:<free port> forwarding
 * to 127.0.0.1:<targetPort>, with test-controlled network faults:
 *
 *   cutAfter(n)     current connections die after n more server->client bytes;
 *                   with no connection open, the NEXT accepted one gets the
 *                   budget (so a test can arm it before spawning the CLI)
 *   cutEvery(n)     same, and every future connection gets the same budget
 *   cutNow()        kill every current connection
 *   stall/unstall   stop/resume forwarding in both directions, sockets stay open
 *   throttle(bps)   limit server->client bandwidth (shared by all connections)
 *   latency(ms)     hold every byte ms before forwarding it, both directions
 *                   (a round trip of 2 x ms; at most HIGH_WATER in flight per
 *                   direction, so meant for round trips, not bandwidth)
 *
 * A "cut" delivers exactly the budgeted bytes, then ends the client side
 * (FIN) and destroys the server side, so the client sees a dropped connection
 * after a precisely known amount of data.
 *
 * While the target is down (server restarting), accepted connections are
 * closed right away, so the client sees a connection closed before the SSH
 * banner rather than ECONNREFUSED.
 *
 * Everything is unref'd: a proxy the test forgot to stop() never keeps the
 * process alive on its own.
 */
import net from 'node:net';

import { LOOPBACK, delay, settleWithin } from './util.js';

export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  /** Total bytes forwarded server -> client, all connections. */
  readonly bytesToClient: number;
  /** Total bytes forwarded client -> server, all connections. */
  readonly bytesToServer: number;
  /** Connections accepted so far (cumulative). */
  readonly connections: number;
  /** Connections currently open. */
  readonly activeConnections: number;
  /** Connections ended by a cut budget running out (cumulative): a cut that really happened. */
  readonly cuts: number;
  cutAfter(bytes: number): void;
  cutEvery(bytes: number | null): void;
  cutNow(): void;
  stall(): void;
  unstall(): void;
  throttle(bytesPerSecond: number | null): void;
  latency(oneWayMs: number | null): void;
  /** Resolve once bytesToClient >= n; reject after timeoutMs (default 10 s). */
  waitForBytesToClient(n: number, timeoutMs?: number): Promise<void>;
  /** Resolve once no connection is open; reject after timeoutMs (default 10 s). */
  waitForIdle(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Pause reading from a source once this much is queued for a slow/stalled sink. */
const HIGH_WATER = 256 * 1024;
/** Throttle granularity: tokens accrue continuously, bursts are capped to ~50 ms worth. */
const THROTTLE_TICK_MS = 20;

/** Shared controls read by every link. */
class ProxyState {
  stalled = false;
  cutEveryBytes: number | null = null;
  /** Armed by cutAfter() while no connection was open; consumed by the next one. */
  cutNextBytes: number | null = null;
  bytesToClient = 0;
  bytesToServer = 0;
  cuts = 0;
  latencyMs = 0;
  private rate: number | null = null;
  private tokens = 0;
  private lastRefill = 0;

  setRate(bytesPerSecond: number | null): void {
    if (bytesPerSecond !== null && !(bytesPerSecond > 0)) throw new Error('throttle rate must be > 0 or null');
    this.rate = bytesPerSecond;
    this.tokens = bytesPerSecond === null ? 0 : this.burst();
    this.lastRefill = Date.now();
  }

  private burst(): number {
    return Math.max(1, Math.ceil((this.rate as number) / 20));
  }

  /** Grant up to `want` bytes of server->client bandwidth right now (0 = wait). */
  take(want: number): number {
    if (this.rate === null) return want;
    const now = Date.now();
    this.tokens = Math.min(this.burst(), this.tokens + ((now - this.lastRefill) / 1000) * this.rate);
    this.lastRefill = now;
    const granted = Math.min(want, Math.floor(this.tokens));
    this.tokens -= granted;
    return granted;
  }
}

/** One direction of one connection, with its own queue and backpressure. */
class Pump {
  private queue: Buffer[] = [];
  /** When each queued buffer may go out (latency). */
  private due: number[] = [];
  private queued = 0;
  private waitingDrain = false;
  private srcEnded = false;
  private endSent = false;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    private readonly link: Link,
    readonly toClient: boolean,
  ) {
    src.on('data', (chunk: Buffer) => {
      this.queue.push(chunk);
      this.due.push(Date.now() + this.link.state.latencyMs);
      this.queued += chunk.length;
      if (this.queued > HIGH_WATER) src.pause();
      this.flush();
    });
    src.on('end', () => {
      this.srcEnded = true;
      this.flush();
    });
    dst.on('drain', () => {
      this.waitingDrain = false;
      this.flush();
    });
  }

  /** Take up to `n` bytes off the head of the queue. */
  private dequeue(n: number): Buffer {
    const head = this.queue[0] as Buffer;
    if (n >= head.length) {
      this.queue.shift();
      this.due.shift();
      this.queued -= head.length;
      return head;
    }
    this.queue[0] = head.subarray(n);
    this.queued -= n;
    return head.subarray(0, n);
  }

  /** How many bytes may go out now; 0 means "not now" (a retry is scheduled if needed). */
  private allowance(want: number): number {
    if (!this.toClient) return want;
    const budget = this.link.cutBudget;
    const capped = budget === null ? want : Math.min(want, budget);
    const granted = this.link.state.take(capped);
    if (granted === 0 && capped > 0) this.scheduleRetry();
    return granted;
  }

  private scheduleRetry(ms = THROTTLE_TICK_MS): void {
    if (this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.flush();
    }, ms);
    this.retry.unref();
  }

  flush(): void {
    const { state } = this.link;
    while (!this.link.closed && !state.stalled && !this.waitingDrain && this.queue.length > 0) {
      if (this.toClient && this.link.cutBudget === 0) return this.link.cut();
      const early = (this.due[0] as number) - Date.now();
      if (early > 0) return this.scheduleRetry(early);
      const n = this.allowance((this.queue[0] as Buffer).length);
      if (n === 0) return;
      const piece = this.dequeue(n);
      this.count(piece.length);
      if (!this.dst.write(piece)) this.waitingDrain = true;
      if (this.toClient && this.link.cutBudget === 0) return this.link.cut();
    }
    if (this.link.closed || state.stalled) return;
    if (this.srcEnded && this.queue.length === 0) {
      // Propagate a half-close only after everything queued went out.
      if (!this.endSent) this.dst.end();
      this.endSent = true;
    } else if (this.queued <= HIGH_WATER) {
      this.src.resume();
    }
  }

  private count(n: number): void {
    if (this.toClient) {
      this.link.state.bytesToClient += n;
      if (this.link.cutBudget !== null) this.link.cutBudget -= n;
    } else {
      this.link.state.bytesToServer += n;
    }
  }

  dispose(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.queue = [];
    this.due = [];
    this.queued = 0;
  }
}

/** A proxied client connection and its upstream socket. */
class Link {
  closed = false;
  cutBudget: number | null;
  private readonly down: Pump;
  private readonly up: Pump;

  constructor(
    readonly client: net.Socket,
    readonly upstream: net.Socket,
    readonly state: ProxyState,
    private readonly onClose: (l: Link) => void,
  ) {
    // Budgets count from the first byte, i.e. they include the SSH handshake (~2-4 KiB).
    this.cutBudget = state.cutNextBytes ?? state.cutEveryBytes;
    state.cutNextBytes = null;
    for (const s of [client, upstream]) {
      s.unref();
      s.setNoDelay(true);
      s.on('error', () => this.destroy());
      s.on('close', () => this.destroy());
    }
    this.down = new Pump(upstream, client, this, true);
    this.up = new Pump(client, upstream, this, false);
    if (state.stalled) this.pause();
  }

  pause(): void {
    this.client.pause();
    this.upstream.pause();
  }

  flush(): void {
    this.down.flush();
    this.up.flush();
  }

  setCutBudget(bytes: number | null): void {
    this.cutBudget = bytes;
    if (bytes === 0) this.cut();
    else this.flush();
  }

  /** Deliver what was already written to the client, then drop both sides. */
  cut(): void {
    if (this.closed) return;
    this.closed = true;
    this.state.cuts += 1;
    this.upstream.destroy();
    this.client.end(() => this.client.destroy());
    // A client that stopped reading would never let end() finish.
    setTimeout(() => this.client.destroy(), 1000).unref();
    this.finish();
  }

  /**
   * Abort both sides now. A link that is already being cut is left alone
   * (unless `force`), otherwise the upstream 'close' event would destroy the
   * client socket before the budgeted bytes were flushed to it.
   */
  destroy(force = false): void {
    const wasClosed = this.closed;
    if (wasClosed && !force) return;
    this.closed = true;
    this.client.destroy();
    this.upstream.destroy();
    if (!wasClosed) this.finish();
  }

  private finish(): void {
    this.down.dispose();
    this.up.dispose();
    this.onClose(this);
  }
}

async function pollUntil(done: () => boolean, timeoutMs: number, why: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(why());
    await delay(10);
  }
}

export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  const state = new ProxyState();
  const links = new Set<Link>();
  // Every socket until it is fully closed, including ones of links being cut.
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  let stopping: Promise<void> | null = null;

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    accepted += 1;
    const upstream = net.connect({ host: LOOPBACK, port: targetPort, allowHalfOpen: true });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    }
    const link = new Link(client, upstream, state, (l) => links.delete(l));
    links.add(link);
    if (!state.stalled) client.resume();
  });
  server.unref();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as net.AddressInfo;

  const forEachLink = (fn: (l: Link) => void): void => [...links].forEach(fn);

  return {
    host: LOOPBACK,
    port,
    get bytesToClient() {
      return state.bytesToClient;
    },
    get bytesToServer() {
      return state.bytesToServer;
    },
    get connections() {
      return accepted;
    },
    get activeConnections() {
      return links.size;
    },
    get cuts() {
      return state.cuts;
    },
    cutAfter(bytes: number) {
      if (links.size === 0) state.cutNextBytes = bytes;
      else forEachLink((l) => l.setCutBudget(bytes));
    },
    cutEvery(bytes: number | null) {
      state.cutEveryBytes = bytes;
      state.cutNextBytes = null;
      forEachLink((l) => l.setCutBudget(bytes));
    },
    cutNow() {
      forEachLink((l) => l.destroy());
    },
    stall() {
      state.stalled = true;
      forEachLink((l) => l.pause());
    },
    unstall() {
      state.stalled = false;
      forEachLink((l) => l.flush());
    },
    throttle(bytesPerSecond: number | null) {
      state.setRate(bytesPerSecond);
      forEachLink((l) => l.flush());
    },
    latency(oneWayMs: number | null) {
      if (oneWayMs !== null && !(oneWayMs >= 0)) throw new Error('latency must be >= 0 or null');
      state.latencyMs = oneWayMs ?? 0;
    },
    waitForBytesToClient(n: number, timeoutMs = 10_000) {
      return pollUntil(() => state.bytesToClient >= n, timeoutMs,
        () => `proxy: only ${state.bytesToClient}/${n} bytes reached the client in ${timeoutMs} ms`);
    },
    waitForIdle(timeoutMs = 10_000) {
      return pollUntil(() => links.size === 0, timeoutMs,
        () => `proxy: ${links.size} connection(s) still open after ${timeoutMs} ms`);
    },
    stop() {
      // Everything else is unref'd; settleWithin's timer holds the event loop
      // open (bounded) until the sockets are really closed and the port is free.
      stopping ??= settleWithin(
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          forEachLink((l) => l.destroy(true));
          for (const s of sockets) s.destroy();
        }),
        3000,
      ).then(() => undefined);
      return stopping;
    },
  };
}
