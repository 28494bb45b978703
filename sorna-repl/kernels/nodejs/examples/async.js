// Promises (and timers) are awaited before the run finishes.
const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
(async () => {
  for (const word of ['one', 'two', 'three']) {
    await wait(100);
    console.log(word);
  }
})();
