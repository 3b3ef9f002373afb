// The program around the generated freestanding header checks (tests/core.cmake): each other
// source of it includes one freestanding header alone; linking them proves none of them pulls
// in operator new, malloc or the exception runtime, and each one compiles on its own.
int main() { return 0; }
