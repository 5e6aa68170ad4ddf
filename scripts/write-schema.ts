/** `npm run schema`: write the published contract (packages/mqtt-bootstrap-server/src/schema.ts) to packages/mqtt-bootstrap/schema/provisioning.schema.json. */
import { writeFileSync } from 'node:fs'
import { provisioningSchema } from '../packages/mqtt-bootstrap-server/src/schema.js'

const path = new URL('../packages/mqtt-bootstrap/schema/provisioning.schema.json', import.meta.url)
writeFileSync(path, `${JSON.stringify(provisioningSchema(), null, 2)}\n`)
console.log(`wrote ${path.pathname}`)
