// Some SFTP servers cap the files a session may hold open (appliances, hardened set-ups) and
// answer the open past it with a generic FAILURE. With FILES_IN_FLIGHT small files started at
// once, such a refusal is not the file's fault: it is taken as the server's limit, the open
// waits for another file to close and tries again, and the connection keeps within that limit
// from then on. Before this, each refused file went through the retry delays (5 s, 10 s, ...)
// with a warning, on every run. A refusal while no other file is open is the file's own.

/**
 * Remote file handles of one connection: how many are asked for or open, and at most how many
 * may be. Each open takes a place with acquire(), and its answer is told with opened(),
 * failed() or refused(); an opened handle's place ends with closed().
 */
export class HandleGate {
  /** Handles granted by the server and not yet closed. */
  private open = 0;
  private cap = Infinity;
  private gone = false;
  private nextTicket = 0;
  /** Opens asked for and not yet answered, by ticket. */
  private readonly asking = new Set<number>();
  /** Refusals waiting for the opens sent before them to be answered. */
  private readonly deciding: Array<{ ticket: number; decide: () => void }> = [];
  /** First come, first served: each is handed its place already taken. */
  private readonly waiting: Array<(ticket: number) => void> = [];

  /** Places taken: opens asked for and not yet answered, and handles open. */
  private get taken(): number {
    return this.asking.size + this.open;
  }

  /** At most this many at once (Infinity until the server refused one). */
  get limit(): number {
    return this.cap;
  }

  /** A place for an open about to be sent, once there is room under the limit; its ticket. */
  acquire(): Promise<number> {
    if (this.gone || (this.taken < this.cap && this.waiting.length === 0)) return Promise.resolve(this.take());
    return new Promise<number>((resolve) => this.waiting.push(resolve));
  }

  /** The server granted the open. */
  opened(ticket: number): void {
    this.open++;
    this.answered(ticket);
  }

  /** A granted handle was closed (or its connection is gone). */
  closed(): void {
    this.open--;
    this.pass();
  }

  /** The open failed for a reason of its own. */
  failed(ticket: number): void {
    this.answered(ticket);
    this.pass();
  }

  /**
   * The open was refused with a generic failure. Once the opens sent before it are answered
   * (a server may answer out of order): 'alone' when the server holds no other handle of ours,
   * so the failure is the file's own; else the refusal is read as the server's limit, which
   * becomes the number it holds ('lowered' when that is news, 'full' when the limit already
   * said so), and the open is worth another try once there is room. Each such try finds fewer
   * open than the one before, so a file the server really cannot open ends 'alone'.
   */
  async refused(ticket: number): Promise<'alone' | 'lowered' | 'full'> {
    this.answered(ticket);
    this.pass();
    if ([...this.asking].some((t) => t < ticket)) await new Promise<void>((decide) => this.deciding.push({ ticket, decide }));
    if (this.open === 0) return 'alone';
    if (this.open >= this.cap) return 'full';
    this.cap = this.open;
    return 'lowered';
  }

  /** The connection is gone: nobody waits any more (their requests fail at once). */
  close(): void {
    this.gone = true;
    this.pass();
    for (const d of this.deciding.splice(0)) d.decide();
  }

  private take(): number {
    const ticket = this.nextTicket++;
    this.asking.add(ticket);
    return ticket;
  }

  private answered(ticket: number): void {
    this.asking.delete(ticket);
    const oldest = Math.min(...this.asking);
    for (let i = this.deciding.length - 1; i >= 0; i--) {
      const d = this.deciding[i]!;
      if (d.ticket < oldest) {
        this.deciding.splice(i, 1);
        d.decide();
      }
    }
  }

  private pass(): void {
    while (this.waiting.length > 0 && (this.gone || this.taken < this.cap)) this.waiting.shift()!(this.take());
  }
}
