// A minimal Statehouse agent in TypeScript (Node 18+ or Deno: only `fetch`), over the
// HTTP API of docs/api.md. It records each step as pending, then done, holds the agent's
// lease while it runs (renewed in the background), and after a crash resumes from its
// last completed step.
//
//   npm ci && npm run build     # tsc, from the committed lockfile
//   STATEHOUSE_URL=http://127.0.0.1:8000 STATEHOUSE_TOKEN=sh_… node dist/agent.js research-ts-1
//
// tests/test_typescript_example.py runs it against a real server, kills it mid-run with
// SIGKILL and runs it again: it resumes from its last completed step.

const BASE = (process.env.STATEHOUSE_URL ?? "http://127.0.0.1:8000") + "/api/v1";
const TOKEN = process.env.STATEHOUSE_TOKEN ?? "";
const LEASE_SECONDS = Number(process.env.STATEHOUSE_LEASE_SECONDS ?? 30);
const WORK_MS = Number(process.env.WORK_MS ?? 0); // how long each step's work takes
const owner = { token: crypto.randomUUID().replace(/-/g, ""), host: "ts-agent", pid: process.pid };
let held: Record<string, number> = {};

async function call(method: "GET" | "POST", path: string, body?: object): Promise<any> {
  const response = await fetch(BASE + path, {
    method,
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(`${data.code}: ${data.message}`); // e.g. lease_held
  return data;
}

async function write(agentId: string, key: string, value: unknown): Promise<void> {
  const result = await call("POST", "/transactions", {
    operations: [{ agent_id: agentId, key, value }],
    owner, held, lease_seconds: LEASE_SECONDS,
  });
  held = { ...held, ...result.leased };
  for (const gone of result.released) delete held[gone];
}

async function lastCompletedStep(agentId: string): Promise<number> {
  const q = new URLSearchParams({ agent_id: agentId });
  return (await call("GET", `/agents/status?${q}`)).last_completed_step;
}

async function run(agentId: string, task: string): Promise<void> {
  const q = new URLSearchParams({ agent_id: agentId, key: "task" });
  const existing = await call("GET", `/state?${q}`);
  if (!existing.exists) await write(agentId, "task", { task });
  const start = (await lastCompletedStep(agentId)) + 1; // resume point: -1 + 1 on a new agent
  const renew = setInterval(() => {
    const body = { owner_token: owner.token, lease_seconds: LEASE_SECONDS };
    call("POST", "/leases/renew", body).catch((error) => console.error("renewal failed:", error));
  }, (LEASE_SECONDS * 1000) / 3);
  try {
    for (let step = start; step < 5; step++) {
      const action = { type: "compute", n: step };
      await write(agentId, `step:${step}`, { action, status: "pending" }); // the intention
      await new Promise((done) => setTimeout(done, WORK_MS)); // the work (an LLM call, a tool…)
      const result = step * 10;
      await write(agentId, `step:${step}`, { action, status: "done", result }); // the result
    }
    await write(agentId, "answer", { steps: 5 }); // completed; the lease is released
  } finally {
    clearInterval(renew);
    await call("POST", "/leases/release", { owner_token: owner.token });
  }
}

run(process.argv[2] ?? "research-ts-1", "research").catch((error) => {
  console.error(error);
  process.exit(1);
});
