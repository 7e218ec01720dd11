// The graphql-http audit suite (GraphQL over HTTP) against a running server:
//   node tests/audit/audit.mjs http://127.0.0.1:8000/graphql
// Prints every result that is not "ok" and exits 1 if there is any (warnings included).
import { auditServer } from 'graphql-http';

const url = process.argv[2];
const results = await auditServer({ url });
let notOk = 0;
for (const result of results) {
  if (result.status !== 'ok') {
    notOk += 1;
    console.log(`${result.status.toUpperCase()} ${result.id} ${result.name}: ${result.reason}`);
  }
}
console.log(`${results.length - notOk} ok, ${notOk} not ok`);
process.exit(notOk ? 1 : 0);
