import type { Store as RateLimitStore, Options, ClientRateLimitInfo } from 'express-rate-limit';
import { Store } from './index';

export interface ShmRateLimitStoreOptions {
  store: Store;
  /** Key prefix (default 'rl:'); use one per limiter. */
  prefix?: string;
}

/** An express-rate-limit Store whose counts are exact across every cluster worker. */
export class ShmRateLimitStore implements RateLimitStore {
  constructor(options: ShmRateLimitStoreOptions);
  readonly localKeys: false;
  prefix: string;
  init(options: Options): void;
  increment(key: string): Promise<ClientRateLimitInfo>;
  decrement(key: string): Promise<void>;
  get(key: string): Promise<ClientRateLimitInfo | undefined>;
  resetKey(key: string): Promise<void>;
  resetAll(): Promise<void>;
}
