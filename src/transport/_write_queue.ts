/**
 * The bytes a connection accepted with `write` and the OS has not taken yet,
 * for adapters whose runtime may take part of a write (Deno's `conn.write`,
 * Bun's `socket.write`). Pure; the adapter does the writing:
 *
 * ```ts ignore
 * for (let chunk = queue.next(); chunk !== undefined; chunk = queue.next()) {
 *   const taken = writeSome(chunk); // the runtime's write: all of chunk, part, or none
 *   queue.advance(taken);
 *   if (taken < chunk.length) return; // the rest waits for the runtime to take more
 * }
 * // Everything written: send a FIN waiting behind it, or report the drain.
 * if (queue.takeDrain()) handlers.onDrain();
 * ```
 *
 * Buffers go out in the order they were pushed, each until all of it is
 * gone. A run of small ones is merged into one write, since every write costs
 * a call into the runtime; a large buffer is never copied to save one.
 *
 * @module
 */

/** Queued buffers smaller than this are merged into one write... */
const MERGE_BELOW = 16 * 1024;
/** ...of at most this many bytes. */
const MERGE_LIMIT = 64 * 1024;
/** A queue array longer than this is let go once empty, and compacted once half of it is written. */
const KEPT_LENGTH = 1024;
/** Fills written queue slots. */
const EMPTY = new Uint8Array(0);
/** The array of a queue that has never held anything (most never do: writes are taken whole). */
const NEVER_USED: Uint8Array[] = Object.freeze([]) as unknown as Uint8Array[];

/** Buffers waiting to be written, oldest first, and the number of bytes they hold. */
export class WriteQueue {
  /**
   * The queued buffers are `#buffers[#head]` up to (not including)
   * `#buffers[#tail]`; the array is made on the first push and kept between backlogs.
   */
  #buffers: Uint8Array[] = NEVER_USED;
  #head = 0;
  #tail = 0;
  /** Bytes of the head buffer already written. */
  #headOffset = 0;
  #backlog = 0;
  /** Something was pushed since the last drain: report one once all is written. */
  #drainDue = false;

  /** Bytes pushed and not yet written. */
  get backlog(): number {
    return this.#backlog;
  }

  /**
   * Queue `bytes` behind everything queued. The queue keeps the buffer itself,
   * not a copy, until it is written.
   */
  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.#buffers === NEVER_USED) this.#buffers = [];
    this.#buffers[this.#tail++] = bytes;
    this.#backlog += bytes.length;
    this.#drainDue = true;
  }

  /**
   * What to write next: the unwritten rest of the oldest buffer, or a run of
   * small buffers merged into one; `undefined` when nothing is queued. Tell
   * {@link WriteQueue.advance} how much of it was taken before asking again.
   */
  next(): Uint8Array | undefined {
    const buffers = this.#buffers;
    const first = this.#head;
    const tail = this.#tail;
    if (first === tail) return undefined;
    const head = buffers[first]!;
    // Partly written already: the rest of it alone, never merged (copied) again.
    if (this.#headOffset > 0) return head.subarray(this.#headOffset);
    if (head.length >= MERGE_BELOW || first + 1 === tail) return head;
    let total = head.length;
    let end = first + 1;
    for (; end < tail; end++) {
      const length = buffers[end]!.length;
      if (length >= MERGE_BELOW || total + length > MERGE_LIMIT) break;
      total += length;
    }
    if (end - first < 2) return head;
    const merged = new Uint8Array(total);
    let offset = 0;
    for (let i = first; i < end; i++) {
      const part = buffers[i]!;
      merged.set(part, offset);
      offset += part.length;
      buffers[i] = EMPTY;
    }
    // The merged buffer takes the place of the last one merged.
    buffers[end - 1] = merged;
    this.#head = end - 1;
    return merged;
  }

  /**
   * The runtime took `written` bytes (0 or more) of what {@link WriteQueue.next}
   * returned last.
   */
  advance(written: number): void {
    if (written <= 0) return;
    this.#backlog -= written;
    const buffers = this.#buffers;
    const head = buffers[this.#head]!;
    const offset = this.#headOffset + written;
    if (offset < head.length) {
      this.#headOffset = offset;
      return;
    }
    this.#headOffset = 0;
    buffers[this.#head] = EMPTY;
    const next = ++this.#head;
    if (next === this.#tail) {
      // Empty: start again at the front (a long array, after a large backlog, is let go).
      if (buffers.length > KEPT_LENGTH) this.#buffers = NEVER_USED;
      this.#head = this.#tail = 0;
    } else if (next >= KEPT_LENGTH && next * 2 >= this.#tail) {
      buffers.splice(0, next);
      this.#tail -= next;
      this.#head = 0;
    }
  }

  /**
   * Whether to report a drain now: `true` once after the queue has emptied
   * (a `write` had left bytes in it since the last drain), `false` otherwise.
   */
  takeDrain(): boolean {
    if (!this.#drainDue || this.#head !== this.#tail) return false;
    this.#drainDue = false;
    return true;
  }

  /** Drop everything queued (the connection closed): the buffers are let go unwritten. */
  clear(): void {
    this.#buffers = NEVER_USED;
    this.#head = this.#tail = this.#headOffset = 0;
    this.#backlog = 0;
    this.#drainDue = false;
  }
}
