console.log('Hello, Sorna!');
