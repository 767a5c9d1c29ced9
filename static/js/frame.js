// One requestAnimationFrame pass for every DOM write on a page.
//
// Stream handlers only update in-memory models and call requestWrite(job); the jobs
// queued until the next frame run together, each at most once per frame, so a busy
// market (hundreds of ticks a second) costs one DOM pass per frame, not one per tick.

const jobs = new Set();
let scheduled = false;

export function requestWrite(job) {
  jobs.add(job);
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(run);
  }
}

function run(now) {
  scheduled = false;
  const batch = [...jobs];
  jobs.clear();
  for (const job of batch) {
    try {
      job(now);
    } catch (err) {
      // One broken widget must not stop the others from rendering.
      console.error(err);
    }
  }
}
