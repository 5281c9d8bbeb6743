/* Minimal Arduino API stub for compiling (and running on a PC) the generated examples.
 * No Arduino core for the Nano 33 BLE is installable on the build machine, so the examples
 * are checked against this: it covers only what they call. Not for real boards. */
#ifndef STUDIO_ARDUINO_STUB_H
#define STUDIO_ARDUINO_STUB_H

#include <stddef.h>
#include <stdint.h>

typedef uint8_t byte;
typedef bool boolean;

#define HIGH 1
#define LOW 0
#define OUTPUT 1
#define INPUT 0
#define LED_BUILTIN 13

unsigned long millis(void);
unsigned long micros(void);
void delay(unsigned long ms);
void delayMicroseconds(unsigned int us);
void pinMode(int pin, int mode);
void digitalWrite(int pin, int value);

class StubSerial {
  public:
    void begin(unsigned long baud);
    operator bool() const { return true; }
    size_t print(const char *s);
    size_t print(char c);
    size_t print(int v);
    size_t print(unsigned int v);
    size_t print(long v);
    size_t print(unsigned long v);
    size_t print(double v, int digits = 2);
    size_t println(void);
    size_t println(const char *s);
    size_t println(char c);
    size_t println(int v);
    size_t println(unsigned int v);
    size_t println(long v);
    size_t println(unsigned long v);
    size_t println(double v, int digits = 2);
};

extern StubSerial Serial;

void setup(void);
void loop(void);

#endif
