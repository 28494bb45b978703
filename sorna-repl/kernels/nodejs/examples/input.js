// input() prints the prompt, sends `waiting-input` and blocks until the `input` op arrives.
const name = input('What is your name? ');
console.log(`Hello, ${name}!`);
