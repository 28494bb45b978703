// Run this, then `console.log(counter)` in the next snippet: the context persists.
var counter = (typeof counter === 'undefined' ? 0 : counter) + 1;
console.log(`counter = ${counter}`);
