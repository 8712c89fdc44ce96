/**
 * The `tlvkit` command line's application, to embed in a server of your own:
 * the bundled HELLO/echo app that `tlvkit serve` runs, and the reserved
 * message ids it uses (docs/protocol.md#the-bundled-application). The library
 * itself is the main entry (`@tlvkit/tlvkit`, `tlvkit`); the command line is
 * `src/cli.ts` (the `tlvkit` bin).
 *
 * @example
 * ```ts
 * import { serve } from "@tlvkit/tlvkit";
 * import { createBundledApp } from "@tlvkit/tlvkit/cli";
 * const app = createBundledApp();
 * const server = await serve({ port: 0, router: app.router, onError: app.onError });
 * await server.close();
 * ```
 *
 * @module
 */

export { type BundledApp, createBundledApp, ERROR_ID, HELLO_ID, HELLO_REPLY_PREFIX } from "./src/bundled_app.ts";
export {
  BROADCAST_ID,
  createPubSubApp,
  PUBLISH_ID,
  type PubSubApp,
  type PubSubServer,
  PUSH_ID,
  SUBSCRIBE_ID,
  UNSUBSCRIBE_ID,
  WHOAMI_ID,
} from "./src/pubsub_app.ts";
