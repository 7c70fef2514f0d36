// Where a client key lives, in the words the status window shows (IT asks).

import type { KeyLocation } from './types';

const places: Record<KeyLocation['kind'], string> = {
  tpm: 'TPM',
  secure_enclave: 'Secure Enclave',
  hardware_token: 'Hardware token',
  software_store: 'Software key store',
  pem_file: 'PEM file',
  os_key_store: 'OS key store',
};

export function keyPlace(key: KeyLocation): string {
  return places[key.kind] ?? key.kind;
}
