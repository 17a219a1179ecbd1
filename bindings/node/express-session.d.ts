import { Store as SessionStore, SessionData } from 'express-session';
import { Store } from './index';

export interface ShmSessionStoreOptions {
  store: Store;
  /** Key prefix (default 'sess:'). */
  prefix?: string;
  /** TTL of sessions whose cookie has no expiry (default one day). */
  ttlMs?: number;
  serializer?: { stringify(v: unknown): string; parse(s: string): any };
}

/** An express-session Store shared by every cluster worker. */
export class ShmSessionStore extends SessionStore {
  constructor(options: ShmSessionStoreOptions);
  get(sid: string, callback: (err: any, session?: SessionData | null) => void): void;
  set(sid: string, session: SessionData, callback?: (err?: any) => void): void;
  destroy(sid: string, callback?: (err?: any) => void): void;
  touch(sid: string, session: SessionData, callback?: (err?: any) => void): void;
  length(callback: (err: any, length?: number) => void): void;
  clear(callback?: (err?: any) => void): void;
  all(callback: (err: any, sessions?: SessionData[] | null) => void): void;
}
