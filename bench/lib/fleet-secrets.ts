/** Device identities for the benches: every device's secret derives from its name, so no registry is needed. */
import { createHmac } from 'node:crypto'

export const PRODUCT_KEY = 'a1BenchPK01'
const MASTER = 'bench-master-key (loopback only)'

export const deviceName = (index: number) => `dev-${index}`
export const deviceSecret = (name: string) => createHmac('sha256', MASTER).update(name).digest('hex').slice(0, 32)
