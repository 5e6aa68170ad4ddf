/** `npm run schema`: write the published contract (src/server/schema.ts) to schema/provisioning.schema.json. */
import { writeFileSync } from 'node:fs'
import { provisioningSchema } from '../src/server/schema.js'

const path = new URL('../schema/provisioning.schema.json', import.meta.url)
writeFileSync(path, `${JSON.stringify(provisioningSchema(), null, 2)}\n`)
console.log(`wrote ${path.pathname}`)
