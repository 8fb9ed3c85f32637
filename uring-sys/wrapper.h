/* The one header uring-sys binds; the include directory decides which kernel's. */
#include <linux/io_uring.h>
