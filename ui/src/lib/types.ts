// The host's Snapshot as JSON (src-tauri/src/snapshot.rs and lanyard-core's engine::status).

export type Health = 'reconnecting' | 'signed_out' | 'all_good' | 'degraded' | 'action_needed';

export type IdpStatus =
  | { state: 'signed_out' }
  | { state: 'restoring' }
  | { state: 'signing_in'; user_code: string | null; verification_uri: string | null }
  | {
      state: 'signed_in';
      subject: string;
      email: string | null;
      id_token_expires_at: number;
      refresh_error: string | null;
      /** Present when this sign-in was by another account than the one before it. */
      previous_subject?: string | null;
    }
  | { state: 'needs_sign_in'; reason: string };

export type ServerState =
  | { state: 'not_signed_in' }
  /** An `oauth` server not connected yet: `lanyard connect <id>`. */
  | { state: 'needs_connect' }
  | { state: 'granting' }
  | { state: 'granted'; expires_at: number; scopes: string[]; refresh_at: number }
  | { state: 'denied'; code: string; description: string | null }
  | { state: 'step_up_required'; max_age: number | null }
  | { state: 'failing'; error: string; retry_at: number; attempts: number }
  /** Not kept warm: the next request mints a token. Nothing is wrong. */
  | { state: 'ready_on_first_use'; reason: 'unused' | 'near_budget' };

/** What a server cost and served over the last `window_days` days. */
export interface UsageCounts {
  id_jags: number;
  jwt_bearer_grants: number;
  client_requests: number;
  window_days: number;
}

export interface TokenUse {
  at: number;
  requester: { pid: number | null; executable: string | null };
}

/** Where a client key lives (lanyard-core's device_key::KeyLocation). */
export interface KeyLocation {
  kind: 'tpm' | 'secure_enclave' | 'hardware_token' | 'software_store' | 'pem_file' | 'os_key_store';
  name: string;
}

export interface ServerStatus {
  id: string;
  display_name: string;
  url: string;
  mode: 'enterprise-managed' | 'oauth' | 'client-credentials' | 'workload-identity';
  state: ServerState;
  last_refresh: number | null;
  authorization_server: string | null;
  /** Present once the broker records who took a token. */
  last_used?: TokenUse | null;
  /** Where this server's client key lives, when it authenticates with one. */
  client_key?: KeyLocation | null;
  /** Absent from older agents. */
  usage?: UsageCounts;
  /** Its token is bound to this device's DPoP key (usable through `lanyard proxy` only). */
  dpop_bound?: boolean;
  /** An `oauth` server's connect is under way: its sign-in is open in the browser. */
  connecting?: boolean;
}

export type KeychainStatus =
  | { state: 'available' }
  | { state: 'unavailable'; reason: string }
  | { state: 'locked'; reason: string };

export type PolicyStatus =
  | { state: 'applied' }
  | { state: 'misconfigured'; errors: string[] }
  | { state: 'change_rejected'; errors: string[] };

export interface Status {
  idp: IdpStatus;
  servers: ServerStatus[];
  keychain: KeychainStatus;
  /** Whether the organization's policy is in force (absent from older hosts: applied). */
  policy?: PolicyStatus;
  /** Where the identity provider leg's client key lives, when it signs with one. */
  idp_client_key?: KeyLocation | null;
  updated_at: number;
}

export interface PolicyView {
  source: string;
  support_url: string | null;
  problems: { key_path: string; message: string }[];
}

/** The tray's link to `lanyard agent`. */
export type AgentView =
  | { state: 'connecting' }
  | { state: 'connected'; pid: number; version: string }
  | { state: 'reconnecting'; reason: string };

export interface Snapshot {
  health: Health;
  headline: string;
  now: number;
  status: Status | null;
  policy: PolicyView;
  autostart: { enabled: boolean; locked: boolean };
  /** Whether this app serves `lanyard token`; null until decided. */
  agent: AgentView;
}

/** A failed command, as the host sends it. */
export interface CommandError {
  code: string;
  message: string;
}
