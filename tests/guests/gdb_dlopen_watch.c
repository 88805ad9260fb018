/* A write before a library load: going back to it passes the dynamic linker's event of the
 * load, where gdb stops and goes on back by itself. */
#include <dlfcn.h>
#include <stdio.h>

int value = 0;

int main(void) {
    value = 7;
    void *h = dlopen("libm.so.6", RTLD_NOW);
    printf("%d %s\n", value, h ? "loaded" : "none");
    return 0;
}
