#!/bin/sh
# Provisions an employee's Lanyard client key on a PKCS#11 token (Linux): the token, then a
# non-exportable key where the policy's key reference points, then prints its public JWK for
# registration at the identity provider.
#
#   provision-pkcs11-token.sh [--server ID]
#
# Run it as the employee, after the policy is installed: the policy's
# idp.client_auth.key (or servers[ID].client_auth.key) names the module, the token and the key.
# For the laptop's TPM 2.0 the module is
#   /usr/lib/x86_64-linux-gnu/pkcs11/libtpm2_pkcs11.so   (Debian/Ubuntu: libtpm2-pkcs11-1)
# and tpm2-pkcs11 keeps its token database in ~/.tpm2_pkcs11 (or $TPM2_PKCS11_STORE).
#
# The PINs come from the environment, never the command line (other users can read argv):
#   LANYARD_TOKEN_SO_PIN    the token's security-officer PIN (keep it with IT)
#   LANYARD_TOKEN_USER_PIN  the user PIN; the policy's key.pin must find the same value
#
# Safe to run twice: a token or key already there is kept as it is.
set -eu

lanyard=${LANYARD_CLI:-lanyard}
: "${LANYARD_TOKEN_SO_PIN:?set LANYARD_TOKEN_SO_PIN (the token security-officer PIN)}"
: "${LANYARD_TOKEN_USER_PIN:?set LANYARD_TOKEN_USER_PIN (the PIN Lanyard logs in with)}"

"$lanyard" device-key init-token "$@"
"$lanyard" device-key create --keep-existing "$@"
"$lanyard" device-key show "$@"
