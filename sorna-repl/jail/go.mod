module sorna/jail

go 1.27
