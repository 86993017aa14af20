#ifndef OFA_ARENA_H
#define OFA_ARENA_H
#endif
