// The signing steps of edge-impulse-cli's DataForwarder.upload() (JSON.stringify, HMAC-SHA256 hex
// over the bytes holding 64 "0" as the signature, then the zeros overwritten in the bytes).
// Usage: node data_forwarder_sign.js HMAC_KEY < document.json > signed.json
const crypto = require('crypto');

const hmacKey = process.argv[2];
const emptySignature = Array(64).fill('0').join('');
const input = JSON.parse(require('fs').readFileSync(0, 'utf-8'));
const data = {
  protected: { ver: 'v1', alg: 'HS256', iat: input.protected ? input.protected.iat : 0 },
  signature: emptySignature,
  payload: input.payload,
};

let encodedJson = Buffer.from(JSON.stringify(data), 'utf-8');
const hmac = crypto.createHmac('sha256', hmacKey);
hmac.update(encodedJson);
const signatureJson = hmac.digest().toString('hex');
const ix = encodedJson.indexOf(emptySignature);
encodedJson = Buffer.concat([
  encodedJson.slice(0, ix),
  Buffer.from(signatureJson, 'ascii'),
  encodedJson.slice(ix + signatureJson.length),
]);
process.stdout.write(encodedJson);
