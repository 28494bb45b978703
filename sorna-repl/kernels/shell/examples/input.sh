read -r -p "What is your name? " name
echo "Hello, $name!"
