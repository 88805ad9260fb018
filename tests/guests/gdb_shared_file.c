/*
 * A counter in a file mapped MAP_SHARED: the program creates the file (argv[1]), maps it
 * shared, adds 1 to the counter through the mapping and prints it. For the debugger's tests:
 * a replay run again from its start must find the file as recorded, not as a run before
 * left it.
 */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        return 1;
    volatile int *counter = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (counter == MAP_FAILED)
        return 1;
    *counter += 1;
    printf("value %d\n", *counter);
    return 0;
}
